"""Parsers for the ``-P NAME:PORT`` and ``-E NAME=VALUE`` flags shared by ``thermos`` commands.

Use the plain functions as argparse ``type=`` converters, or the actions from
``add_port_to(dest)`` / ``add_binding_to(dest)`` to collect repeated flags::

    parser.add_argument('-P', '--port', action=add_port_to('prebound_ports'), default={})
    parser.add_argument('-E', '--environment', action=add_binding_to('bindings'), default=[])

``ParseError`` is a ``ValueError`` for callers, and also an argparse error, so argparse prints its
message as one ``argument -P/--port: ...`` line and exits 2 instead of showing a traceback.
"""

import argparse
from typing import Any

from pystachio import Ref

__all__ = ('ParseError', 'add_binding_to', 'add_port_to', 'parse_binding', 'parse_port')

MAX_PORT = 65535


class ParseError(argparse.ArgumentError, argparse.ArgumentTypeError, ValueError):
    """A malformed flag value; the message says what was given and the form expected."""

    def __init__(self, message: str, argument: argparse.Action | None = None) -> None:
        argparse.ArgumentError.__init__(self, argument, message)


def parse_port(value: str) -> tuple[str, int]:
    """``'http:8080'`` -> ``('http', 8080)``; the name is what ``{{thermos.ports[NAME]}}`` uses."""
    name, sep, port = value.partition(':')
    if not sep or not name or ':' in port:
        raise ParseError('invalid port %r: expected NAME:PORT, e.g. http:8080' % value)
    try:
        number = int(port)
    except ValueError:
        raise ParseError('invalid port %r: %r is not an integer (expected NAME:PORT, e.g. http:8080)'
                         % (value, port)) from None
    if not 0 < number <= MAX_PORT:
        raise ParseError('invalid port %r: port must be between 1 and %d' % (value, MAX_PORT))
    return name, number


def parse_binding(value: str) -> dict[Ref, str]:
    """``'pkg.version=1.2'`` -> ``{Ref('pkg.version'): '1.2'}``, ready for ``Task.bind``.

    Only the first ``=`` separates, so values may themselves contain ``=``.
    """
    name, sep, bound = value.partition('=')
    if not sep or not name:
        raise ParseError('invalid binding %r: expected NAME=VALUE, e.g. version=1.2' % value)
    try:
        ref = Ref.from_address(name)
    except Ref.InvalidRefError as e:
        raise ParseError('invalid binding %r: %r is not a template name (%s)' % (value, name, e)) \
            from None
    return {ref: bound}


class _CollectingAction(argparse.Action):
    """Parses each occurrence of the flag and accumulates it on ``namespace.<target>``."""

    target = ''

    def __init__(self, option_strings: list[str], dest: str, **kw: Any) -> None:
        super().__init__(option_strings, dest, **kw)
        # The factory's dest wins over argparse's derived one, so defaults land in the same place.
        self.dest = self.target or dest

    def _parse_and_store(self, namespace: argparse.Namespace, value: str) -> None:
        raise NotImplementedError

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        try:
            self._parse_and_store(namespace, values)
        except ParseError as e:
            raise ParseError(e.message, self) from None


def add_port_to(dest: str) -> type[argparse.Action]:
    """An argparse action adding each ``NAME:PORT`` to the dict ``namespace.<dest>``."""

    class AddPort(_CollectingAction):
        target = dest

        def _parse_and_store(self, namespace: argparse.Namespace, value: str) -> None:
            name, port = parse_port(value)
            ports = dict(getattr(namespace, self.target, None) or {})
            ports[name] = port
            setattr(namespace, self.target, ports)

    return AddPort


def add_binding_to(dest: str) -> type[argparse.Action]:
    """An argparse action appending each ``NAME=VALUE`` as ``{Ref: value}`` to ``namespace.<dest>``."""

    class AddBinding(_CollectingAction):
        target = dest

        def _parse_and_store(self, namespace: argparse.Namespace, value: str) -> None:
            binding = parse_binding(value)
            bindings = list(getattr(namespace, self.target, None) or [])
            bindings.append(binding)
            setattr(namespace, self.target, bindings)

    return AddBinding
