"""Instruments: one module per magnetograph, chosen from the FITS header, that brings a frame to the instrument a
model was trained for and writes its files for the synthetic Sun (:mod:`ingest.instruments.base` for what they
share). Adding an instrument is one module here, imported below."""
from ingest.instruments.base import (
    INSTRUMENTS,
    MASK_NAMES,
    SYNTHETIC_ORIGIN,
    Harmonised,
    Instrument,
    InstrumentSpec,
    bin_geometry,
    harmonise,
    instrument_for,
    instrument_named,
    mask_name,
    plate_scale_arcsec,
)
from ingest.instruments.hmi import HMI  # defining an adapter registers it: HMI is tried first
from ingest.instruments.mdi import MDI

MDI_SPEC = MDI.spec

__all__ = ["HMI", "INSTRUMENTS", "MDI", "MASK_NAMES", "MDI_SPEC", "SYNTHETIC_ORIGIN", "Harmonised", "Instrument", "InstrumentSpec", "bin_geometry",
           "harmonise", "instrument_for", "instrument_named", "mask_name", "plate_scale_arcsec"]
