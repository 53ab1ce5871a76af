"""The -P NAME:PORT and -E NAME=VALUE flag parsers (thermos.common.options)."""

import argparse

import pytest
from pystachio import Ref

from thermos.common.options import ParseError, add_binding_to, add_port_to, parse_binding, parse_port
from thermos.config.schema import Process, Task


def make_parser():
    parser = argparse.ArgumentParser(prog='thermos')
    parser.add_argument('-P', '--port', action=add_port_to('prebound_ports'), default={})
    parser.add_argument('-E', '--environment', action=add_binding_to('bindings'), default=[])
    return parser


def test_parse_port():
    assert parse_port('http:8080') == ('http', 8080)


@pytest.mark.parametrize('value, message', [
    ('http', "invalid port 'http': expected NAME:PORT, e.g. http:8080"),
    (':80', "invalid port ':80': expected NAME:PORT, e.g. http:8080"),
    ('a:b:c', "invalid port 'a:b:c': expected NAME:PORT, e.g. http:8080"),
    ('http:web', "invalid port 'http:web': 'web' is not an integer (expected NAME:PORT, e.g. http:8080)"),
    ('http:0', "invalid port 'http:0': port must be between 1 and 65535"),
    ('http:70000', "invalid port 'http:70000': port must be between 1 and 65535"),
])
def test_parse_port_rejects(value, message):
    with pytest.raises(ParseError) as info:
        parse_port(value)
    assert str(info.value) == message
    assert isinstance(info.value, ValueError)


def test_parse_binding():
    assert parse_binding('version=1.2') == {Ref.from_address('version'): '1.2'}
    assert parse_binding('pkg.flags=--a=1') == {Ref.from_address('pkg.flags'): '--a=1'}
    assert parse_binding('empty=') == {Ref.from_address('empty'): ''}


@pytest.mark.parametrize('value', ['novalue', '=x', 'a[=x'])
def test_parse_binding_rejects(value):
    with pytest.raises(ParseError) as info:
        parse_binding(value)
    assert str(info.value).startswith('invalid binding %r: ' % value)


def test_actions_collect_repeated_flags():
    options = make_parser().parse_args(['-P', 'http:80', '--port', 'admin:81', '-E', 'a=1', '-E', 'b=2'])
    assert options.prebound_ports == {'http': 80, 'admin': 81}
    assert options.bindings == [{Ref.from_address('a'): '1'}, {Ref.from_address('b'): '2'}]
    assert make_parser().parse_args([]).prebound_ports == {}
    assert make_parser().parse_args([]).bindings == []


def test_defaults_are_not_shared_between_parses():
    parser = make_parser()
    parser.parse_args(['-P', 'http:80'])
    assert parser.parse_args([]).prebound_ports == {}


def test_bindings_apply_to_a_task():
    options = make_parser().parse_args(['-E', 'greeting=hi'])
    task = Task(name='t', processes=[Process(name='p', cmdline='echo {{greeting}}')])
    assert task.bind(*options.bindings).processes()[0].cmdline().get() == 'echo hi'


def test_bad_flag_is_a_one_line_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        make_parser().parse_args(['-P', 'http:web'])
    assert info.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last == ("thermos: error: argument -P/--port: invalid port 'http:web': 'web' is not an "
                    "integer (expected NAME:PORT, e.g. http:8080)")


def test_parse_port_works_as_an_argparse_type(capsys):
    parser = argparse.ArgumentParser(prog='x')
    parser.add_argument('--port', type=parse_port)
    assert parser.parse_args(['--port', 'a:1']).port == ('a', 1)
    with pytest.raises(SystemExit):
        parser.parse_args(['--port', 'a'])
    assert capsys.readouterr().err.strip().endswith(
        "argument --port: invalid port 'a': expected NAME:PORT, e.g. http:8080")
