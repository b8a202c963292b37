"""Offline half: model, relabel loop, ensembles, threshold, onset, ONNX export (``train-ensemble``)."""
