"""``python -m simtoreal.train COMMAND [flags]``: one sub-command per module of this package.

``python -m simtoreal.train ENV_ID [flags]`` is short for ``train gym --env-id ENV_ID [flags]``:
a first argument that is not a command but looks like a Gymnasium id (it holds ``-v`` or ``:``,
or is registered) goes to the ``gym`` command.

Each command module exposes ``cli(argv) -> summary`` and ``print_summary(summary)``; modules are
imported only when their command runs, so ``train grid`` never pays for transformers or the vision
stack. Errors raised on purpose (:class:`SimToRealError`) exit with status 2 and one message.
"""

from __future__ import annotations

import importlib
import sys

from simtoreal.errors import ConfigError, SimToRealError

# command -> (module, one-line description); the order is the order of --help.
COMMANDS: dict[str, tuple[str, str]] = {
    "grid": ("simtoreal.train.grid", "Train a teacher policy on the state view of a grid world."),
    "gym": ("simtoreal.train.gym", "Train a teacher policy on the state of any Gymnasium env."),
    "vision": (
        "simtoreal.train.vision",
        "Train the vision stack (frozen CNN trunk) as a detector.",
    ),
    "nlp": ("simtoreal.train.nlp", "Text classifier on a tapped layer of a frozen transformer."),
}


def main(argv: list[str] | None = None) -> None:
    """Dispatch to the command named by ``argv[0]``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        _print_usage()
        raise SystemExit(0 if argv else 2)
    if argv[0] not in COMMANDS and _looks_like_env_id(argv[0]):
        argv = ["gym", "--env-id", *argv]
    try:
        if argv[0] not in COMMANDS:
            raise ConfigError(
                f"unknown command {argv[0]!r}: use one of {', '.join(COMMANDS)}, or a Gymnasium "
                "env id (python -m simtoreal.train CartPole-v1)."
            )
        module = importlib.import_module(COMMANDS[argv[0]][0])
        summary = module.cli(argv[1:])
    except SimToRealError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    module.print_summary(summary)


def _looks_like_env_id(arg: str) -> bool:
    if arg.startswith("-"):
        return False
    if "-v" in arg or ":" in arg:
        return True
    import gymnasium

    return arg in gymnasium.registry


def flag_value(argv: list[str], flag: str) -> str | None:
    """Value of ``--flag X`` or ``--flag=X`` in argv, or None."""
    for i, arg in enumerate(argv):
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
        if arg == flag:
            if i + 1 == len(argv):
                raise ConfigError(f"{flag} needs a value: {flag} PATH.")
            return argv[i + 1]
    return None


def resume_flag(argv: list[str]) -> str | None:
    """The run directory of ``--resume RUN_DIR`` in argv, which then may hold nothing else: a
    resumed run continues with its saved config.json."""
    run_dir = flag_value(argv, "--resume")
    if run_dir is not None and len(argv) != (2 if "--resume" in argv else 1):
        raise ConfigError(
            "--resume takes no other flags: the run continues with its saved config.json."
        )
    return run_dir


def _print_usage() -> None:
    print("usage: python -m simtoreal.train COMMAND [flags]\n\ncommands:")
    for name, (_, description) in COMMANDS.items():
        print(f"  {name:<8}{description}")
    print("  ENV_ID  Short for: gym --env-id ENV_ID (e.g. python -m simtoreal.train CartPole-v1).")
    print("\nRun python -m simtoreal.train COMMAND --help for the flags of a command.")
