"""distill: diffusion and flow distillation in JAX/Flax (see README.md; `distill.api` for the Python interface)."""

import os

# clu's metric writers import TensorFlow, whose C++ start-up prints oneDNN and absl banners on stderr. TensorFlow does
# no numerics here, so its oneDNN rewrites are off and its C++ logging is quiet, unless the user set these.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
