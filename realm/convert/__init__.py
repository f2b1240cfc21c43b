"""Checkpoint converters between ``realm`` folders and other formats (see ``docs/convert.md``)."""

from realm.convert.hf_realm import ConversionError, from_hf_realm, read_hf_state, to_hf_realm

__all__ = ["ConversionError", "from_hf_realm", "read_hf_state", "to_hf_realm"]
