"""Definitions shared by the offline (training) and online (serving) halves.

One definition of the Carrington patch grid (:mod:`common.patches`) and of a
patch video (:mod:`common.video`), configured from one typed place
(:mod:`common.config`).
"""
