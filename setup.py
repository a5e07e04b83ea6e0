# Wheel builds compile the native renderer through cffi (API mode).
# `make native` does the same in place for development.
from setuptools import setup

setup(cffi_modules=["bindings/build_avz.py:ffibuilder"])
