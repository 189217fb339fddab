"""ftc, the fine-tune compiler: one YAML spec compiled into everything a fine-tuning run needs."""

__version__ = "0.1.0"
