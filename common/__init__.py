"""What the offline (training) and online (serving) halves share, and nothing else.

The clock (:mod:`common.clock`: one cadence, slot ↔ time), the Carrington
patch grid (:mod:`common.patches`) and the passage rule (:mod:`common.passage`),
the observer's geometry (:mod:`common.observer`), the patch video and its model
input scaling (:mod:`common.video`), the onset rule (:mod:`common.onset`) and the
ensemble's decision and stability rules (:mod:`common.ensemble`), configured from
one typed place (:mod:`common.config`).
"""
