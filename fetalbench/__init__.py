"""fetalbench: a benchmark for label-efficient fetal ultrasound standard-plane classification.

Reproduces and extends Migliorelli et al., "On the use of contrastive learning for standard-plane
classification in fetal ultrasound imaging", Computers in Biology and Medicine 174:108430 (2024).
"""

__version__ = "0.1.0"
