"""IQA data: dataset readers, the KADID-style synthetic distortion bank, task sampling, loading.

Public names:
  distort(image_uint8, dist_type, level, *, seed=0) -> uint8   the 25 KADID distortions
  KADID_TYPES                                                  their names, KADID order
  kadid_label(dist_type, level) -> float                       human mean DMOS (1..5)
  KADID10k, TID2013, LIVEChallenge, KonIQ10k, CSVDataset, SyntheticBank, make_source,
  open_source (make_source for a config key: a refused label table as DatasetError)
"""

from metaiqa_jax.data.csv_dataset import CSVDataset
from metaiqa_jax.data.distortions import LEVEL_PARAMS, distort
from metaiqa_jax.data.kadid10k import KADID10k
from metaiqa_jax.data.koniq10k import KonIQ10k
from metaiqa_jax.data.labels import KADID_TYPES, kadid_label
from metaiqa_jax.data.livec import LIVEChallenge
from metaiqa_jax.data.registry import SOURCE_NAMES, DatasetError, make_source, open_source
from metaiqa_jax.data.synthetic import SyntheticBank
from metaiqa_jax.data.tid2013 import TID2013
