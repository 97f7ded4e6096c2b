"""Companion stacks over :mod:`simtoreal.core`: ``frozen source -> trainable adapter -> head``.

``simtoreal.stacks.vision`` (a detector on a tapped CNN trunk) and ``simtoreal.stacks.nlp`` (a
classifier on a tapped transformer layer). Import the submodule you need; neither is imported
here, so the RL path never loads torchvision detection code or transformers.
"""
