"""Everything a ``.thermos`` file sees: the schema, its units and the composition helpers.

Mirrors ``apache.thermos.config.schema`` so ``from thermos.config.schema import *`` is the only
change an Aurora-era script needs.
"""

from .schema_base import *  # noqa: F403
from .schema_base import __all__ as _base_all
from .schema_helpers import *  # noqa: F403
from .schema_helpers import __all__ as _helpers_all

__all__ = tuple(_base_all) + tuple(_helpers_all)
