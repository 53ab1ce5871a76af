"""Package discovery only; all metadata lives in pyproject.toml.

executor/, gc/ and observer/ are installed as thermos.executor, thermos.gc and thermos.observer
(`gc` is a CPython built-in, so it can never be a top-level package).
"""

from setuptools import find_packages, setup

MAPPED = ("executor", "gc", "observer")

packages = find_packages(include=["thermos", "thermos.*"])
package_dir = {"thermos": "thermos"}
for top in MAPPED:
    packages += ["thermos." + name for name in find_packages(include=[top, top + ".*"])]
    package_dir["thermos." + top] = top

setup(packages=packages, package_dir=package_dir)
