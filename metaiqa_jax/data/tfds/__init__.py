"""TFDS builders for the package's sources (no TensorFlow) and a source over prepared data."""

from metaiqa_jax.data.tfds.builders import (MetaiqaCid2013, MetaiqaCsv, MetaiqaKadid10k,
                                            MetaiqaKoniq10k, MetaiqaLivec, MetaiqaSynthetic,
                                            MetaiqaTid2013)
from metaiqa_jax.data.tfds.source import TFDSSource, decode_image
