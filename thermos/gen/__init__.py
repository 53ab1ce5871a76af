"""Thrift IDL for the on-disk records and the code generated from it (see scripts/gen_thrift.sh)."""
