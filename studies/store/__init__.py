"""The store room: every reader and writer of a stored study that is not the driver.

``storage`` opens a storage URL with one-line errors, ``catalog`` reads studies and trials (lists,
tables, selection, the study's settings), ``export`` writes a chosen trial's config as YAML. Nothing
here imports ``studies.driver``: reading a study never needs Ray.
"""
