"""Options of the small analysis scripts, given as Hydra's key=value overrides on top of their defaults."""
from __future__ import annotations

import sys

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException


def options(defaults: dict, argv: list[str] | None = None) -> DictConfig:
    """`defaults` with the command line's key=value arguments applied; an unknown key or a malformed argument
    ends the script with a one-line error that lists the keys it takes."""
    args = sys.argv[1:] if argv is None else argv
    cfg = OmegaConf.create(defaults)
    OmegaConf.set_struct(cfg, True)
    try:
        bad = [a for a in args if "=" not in a]
        if bad:
            raise ValueError(f"expected key=value, got {bad[0]!r}")
        return OmegaConf.merge(cfg, OmegaConf.from_dotlist(args))
    except (ValueError, OmegaConfBaseException) as err:
        first = str(err).splitlines()[0]
        raise SystemExit(f"{sys.argv[0]}: {first} (options: {', '.join(f'{k}={v}' for k, v in defaults.items())})")
