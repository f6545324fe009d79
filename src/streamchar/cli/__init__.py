"""The `streamchar` command: the parser and `main`; each group of commands lives in its own module (use, data,
eval, train; shared option checks in options). Heavy imports (torch, diffusers, transformers) happen inside
the commands."""

from __future__ import annotations

import argparse
import os
import sys

from streamchar.errors import StreamCharError

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # weights come from local paths only
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


class HelpFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default, where it has one (None and False are no default)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "%(default)" in text or "default:" in text or action.default in (None, False, argparse.SUPPRESS):
            return text
        if not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """A usage mistake is one line too (argparse prints the whole usage first): what is wrong, where to look."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from streamchar import __version__
    from streamchar.cli import data, train, use
    from streamchar.cli import eval as evaluate
    from streamchar.config import PRESETS, SAMPLERS

    presets, samplers = sorted(PRESETS), list(SAMPLERS)
    p = Parser(prog="streamchar", description="Real-time streaming talking-character generation.",
               formatter_class=HelpFormatter)
    p.add_argument("--version", action="version", version=f"streamchar {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    use.add_commands(sub, presets, samplers)
    data.add_commands(sub, presets)
    evaluate.add_commands(sub, presets, samplers)
    train.add_commands(sub)
    _show_defaults(p)
    return p


def _show_defaults(parser: argparse.ArgumentParser) -> None:
    """Every (sub)command's help shows the options' defaults."""
    parser.formatter_class = HelpFormatter
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _show_defaults(sub)


def main(argv: list[str] | None = None) -> int:
    from streamchar.malloc import retain_freed_memory

    args = build_parser().parse_args(argv)
    try:
        retain_freed_memory()  # a CPU model's activations reuse the heap instead of faulting in new pages
        return args.func(args)
    except StreamCharError as e:
        print(f"streamchar: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("streamchar: interrupted", file=sys.stderr)
        return 130
