"""`spade-rt serve`'s settings are one table (ServeSettings): the flags, defaults, checks, GET /v1/model's sections
and docs/serving.md's "Limits" table all come from it. These tests hold the table to what existed before it
(every flag name and default, written out here), to the docs, and to what the command line gives.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from spade_rt.cli import build_parser
from spade_rt.commands.serve import settings_from_args
from spade_rt.errors import ConfigError
from spade_rt.serve.inputs import describe_model
from spade_rt.serve.settings import ServeSettings, docs_rows, options

DOCS = Path(__file__).resolve().parents[1] / "docs" / "serving.md"
# Every flag `spade-rt serve` had before the table, with its default as the command line gave it: the table
# must keep each one (no behaviour change). field -> (flag, default)
BEFORE = {
    "host": ("--host", "127.0.0.1"),
    "port": ("--port", 8000),
    "max_batch": ("--max-batch", None),
    "max_delay_ms": ("--max-delay-ms", 2.0),
    "max_queue": ("--max-queue", 64),
    "allow_origins": ("--allow-origin", ()),
    "allow_hosts": ("--allow-host", ()),
    "max_body_bytes": ("--max-body", 4 << 20),
    "max_map_pixels": ("--max-map-pixels", 2048 * 1024),
    "max_decodes": ("--max-decodes", 2),
    "max_connections": ("--max-connections", 64),
    "max_painters": ("--max-painters", 16),
    "max_head_bytes": ("--max-head", 16 << 10),
    "idle_timeout_s": ("--idle-timeout", 5.0),
    "read_timeout_s": ("--read-timeout", 10.0),
    "graceful_timeout_s": ("--graceful-timeout", 30.0),
    "warm_up": ("--no-warm-up", True),
    "access_log": ("--access-log", False),
}
# A value each flag takes on the command line, and the field value it must give.
GIVEN = {
    "--host": ("::1", "::1"),
    "--port": ("0", 0),
    "--max-batch": ("4", 4),
    "--max-delay-ms": ("3.5", 3.5),
    "--max-queue": ("9", 9),
    "--allow-origin": ("http://tools.example:3000", ("http://tools.example:3000",)),
    "--allow-host": ("lan", ("lan",)),
    "--max-body": ("64K", 65536),
    "--max-map-pixels": ("40000", 40000),
    "--max-decodes": ("3", 3),
    "--max-connections": ("12", 12),
    "--max-painters": ("0", 0),
    "--max-head": ("8K", 8192),
    "--idle-timeout": ("1", 1.0),
    "--read-timeout": ("2.5", 2.5),
    "--graceful-timeout": ("0", 0.0),
}


def parse(*argv: str) -> ServeSettings:
    return settings_from_args(build_parser().parse_args(["serve", *argv]))


def test_every_flag_and_default_of_before_is_kept():
    table = {f.name: (opt.flag, f.default) for f, opt in options() if opt.flag is not None}
    assert table == BEFORE
    assert dataclasses.asdict(parse()) == dataclasses.asdict(ServeSettings())  # no flag: the field defaults


def test_each_flag_sets_its_field():
    for name, (flag, _) in BEFORE.items():
        if flag in GIVEN:
            text, want = GIVEN[flag]
            got = getattr(parse(flag, text), name)
        else:  # a switch: the opposite of its default
            want, got = not BEFORE[name][1], getattr(parse(flag), name)
        assert got == want, (flag, got, want)
    assert parse("--allow-host", "a", "--allow-host", "b").allow_hosts == ("a", "b")  # repeatable


def test_help_shows_each_default_once_from_the_table():
    parser = build_parser()
    serve = next(a for a in parser._subparsers._group_actions[0].choices.items() if a[0] == "serve")[1]
    helps = {flag: a.help for a in serve._actions for flag in a.option_strings}
    for flag, want in (("--max-body", "(default 4M)"), ("--max-head", "(default 16K)"), ("--max-queue", "(default 64)"),
                       ("--idle-timeout", "(default 5 s)"), ("--graceful-timeout", "(default 30 s)"),
                       ("--max-delay-ms", "(default 2 ms)"), ("--port", "(default 8000;")):  # fmt: skip
        assert want in helps[flag] and helps[flag].count("default") == 1, (flag, helps[flag])


@pytest.mark.parametrize(
    "argv, words",
    [
        (("--port", "70000"), "--port 70000: expected 0..65535 (0: any free port)"),
        (("--max-batch", "0"), "--max-batch 0: expected 1 or more"),
        (("--max-delay-ms", "-1"), "--max-delay-ms -1: expected 0..10000"),
        (("--max-body", "100"), "--max-body 100: expected 1K or more"),
        (("--max-decodes", "65"), "--max-decodes 65: expected 1..64"),
        (("--max-painters", "-1"), "--max-painters -1: expected 0 or more (0: no painters)"),
        (("--max-head", "2M"), "--max-head 2097152: expected 1K..1M"),
        (("--idle-timeout", "0"), "--idle-timeout 0: expected more than 0, at most 3600"),
        (("--read-timeout", "3601"), "--read-timeout 3601: expected more than 0, at most 3600"),
        (("--graceful-timeout", "-0.5"), "--graceful-timeout -0.5: expected 0 or more"),
    ],
)
def test_each_check_refuses_past_its_range_in_one_line(argv, words):
    with pytest.raises(ConfigError) as refused:
        parse(*argv).validate()
    assert str(refused.value).startswith(words) and "\n" not in str(refused.value)


def test_the_edges_of_each_range_are_accepted():
    for argv in (("--port", "65535"), ("--max-decodes", "64"), ("--max-head", "1K"), ("--max-head", "1M"),
                 ("--idle-timeout", "3600"), ("--max-painters", "0"), ("--max-delay-ms", "0")):  # fmt: skip
        parse(*argv).validate()


def limits_table() -> list[str]:
    """The rows of docs/serving.md's "Limits" table."""
    lines = DOCS.read_text().split("### Limits", 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| limit | option |"))
    end = next(i for i in range(start, len(lines)) if not lines[i].startswith("|"))
    return lines[start + 2 : end]


def test_the_docs_limits_table_is_the_settings_table():
    rows = limits_table()
    with_option = [r for r in rows if re.match(r"\|[^|]*\| `--", r)]
    expected = "\n".join(docs_rows())
    assert with_option == docs_rows(), f"docs/serving.md's limits with an option must be, in this order:\n{expected}"
    assert len(rows) > len(with_option)  # the limits that have no option (frames, pings) are written by hand


def test_the_model_description_shows_the_settings_sections(demo_graph):
    from spade_rt.runtime.synthesizer import Synthesizer
    from spade_rt.validation import MAX_SEED

    settings = parse("--max-connections", "12", "--max-body", "64K", "--idle-timeout", "1", "--max-queue", "9")
    with Synthesizer(demo_graph) as synth:
        info = describe_model(synth.spec, model="m", kind="onnx", backend="x", max_batch=3, settings=settings)
    assert info["batching"] == {"max_batch": 3, "max_delay_ms": 2.0, "max_queue": 9}
    assert info["limits"] == {
        "max_body_bytes": 65536,
        "max_map_pixels": 2048 * 1024,
        "max_decodes": 2,
        "max_connections": 12,
        "max_painters": 16,
        "max_head_bytes": 16 << 10,
        "idle_timeout_s": 1.0,
        "read_timeout_s": 10.0,
    }
    assert info["seed"] == {"min": 0, "max": 2**32 - 1} and MAX_SEED == 2**32 - 1
