"""From full-disk magnetogram FITS files to cleaned maps, patch frames and patch videos."""
