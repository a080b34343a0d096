"""ETH/UCY: the five leave-one-out folds of the pedestrian benchmark, and the step that prepares its files.

Fold S tests on the whole recordings of scene S (`all_data/`), trains on the `train/` part of every
other recording and validates on their `val/` part, as the dataset README and PROTOCOL.md define it.
"""
from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import urllib.request
from pathlib import Path
from typing import Final

from cvae_traj.data.datamodule import Split, TrackDataModule
from cvae_traj.data.tracks import TrackTable, read_raw_eth_ucy, validate_tracks
from cvae_traj.errors import InputError

log = logging.getLogger(__name__)

# The recordings tested on in each fold; crowds_zara03 and uni_examples are only ever trained on.
SCENES: Final = {
    "eth": ("biwi_eth",),
    "hotel": ("biwi_hotel",),
    "univ": ("students001", "students003"),
    "zara1": ("crowds_zara01",),
    "zara2": ("crowds_zara02",),
}
RECORDINGS: Final = ("biwi_eth", "biwi_hotel", "crowds_zara01", "crowds_zara02", "crowds_zara03",
                     "students001", "students003", "uni_examples")
# Annotations are every 10 video frames = 0.4 s.
FRAME_STEP: Final = 10
DT: Final = 0.4
# Where real users download from: the copy in the public Trajectron++ repository.
PUBLIC_URL: Final = ("https://raw.githubusercontent.com/StanfordASL/Trajectron-plus-plus/master/"
                     "experiments/pedestrians/raw/raw")
# sha256 of every file, so that a copy or download that differs from the benchmark is refused.
SHA256: Final = {
    "all_data/biwi_eth.txt": "cf8d3fd342a15f409ebc2a1fc76b91a0f06390bd21f1e11410f3859331ab082b",
    "all_data/biwi_hotel.txt": "9caa771bb9153d6b809dd0916b6f86761b641e6bbb15e766c1de3133fbbb7fcf",
    "all_data/crowds_zara01.txt": "1147a1962a09abfb86f28c6cddcac862e095a0cf129b3016385b69eacdd09d85",
    "all_data/crowds_zara02.txt": "8a649d0f8c9ae75c87c4d23a85f892786b0aa30266e996c7be03e69dafff22ff",
    "all_data/crowds_zara03.txt": "16b3e899932c4baacd07f45013d5b921f90bc5a29eb2b0fe42f4d7c904ac3108",
    "all_data/students001.txt": "a6d87f278d94136fe39b8be91555487a29ac77259ae403b9dba2d5c18caf7b5b",
    "all_data/students003.txt": "e25798b660634330aa89f8bb259425de720e84d0873902726c1d1f4ccff21d6c",
    "all_data/uni_examples.txt": "61f432c0ab3070ed0ef150fbeabcd7baf839cab5495a46e6105bd747f0a092a7",
    "train/biwi_eth_train.txt": "7905d1337f8466c3ebcd80e8264158209370e939774a371d215491256128407e",
    "train/biwi_hotel_train.txt": "f3f485043273e3d972efd73770df0021ec7d3d5135f60d2e2ca5809f68d6f104",
    "train/crowds_zara01_train.txt": "5b2ff1a334f4b3e8595e0ee898874b1795561db7bde97e90cbc4a1382c8c3d56",
    "train/crowds_zara02_train.txt": "9fd606341135d7d211c3af259c9eb2c25e4c7035efc43d3007ceeef6f954b247",
    "train/crowds_zara03_train.txt": "d38a0a6cd1e24adadbb3b15cac97b747e5c6ace2c59d457d805f38a4d91d5a03",
    "train/students001_train.txt": "f41a0a63301e1c15104205c4a1540db477ddc3330ee2801a976d7b9fc238a63e",
    "train/students003_train.txt": "85fe6324e9a0b94acb21617eb0331f543fe5ebf0caee1e253794bca554f35daf",
    "train/uni_examples_train.txt": "06866bea5c2f589094473371e9fb6b653c7af95e5f748434bc1024544c5e1c7a",
    "val/biwi_eth_val.txt": "ed19f8ee52e024788658d70060c1452b991aa506b78ea649c74f79e075ad20b9",
    "val/biwi_hotel_val.txt": "5c6026c5c6feb81295187e2e063d86197344428811ac2ae98a45bdfb5dfa79ed",
    "val/crowds_zara01_val.txt": "d5212e4e3289aa44365e5ce34a476ef2a4208c89bd6a29204ece097c7f33c157",
    "val/crowds_zara02_val.txt": "361949e5655814680e1185bdd23344932f7b6ccc0d7120c34b523495d0fc69f8",
    "val/crowds_zara03_val.txt": "60d464e21fd3851fab146ec3b35d0db4155b3c057f4b46050336eac59314f0f5",
    "val/students001_val.txt": "dc8f3147820e80642903041b017292eb03ea5df81ffd2974b47a725d8ffeb394",
    "val/students003_val.txt": "b7aa6dcedba0e9036272dc363e2a25e6bb80d7485d75dcb3fff918ce01b10e24",
    "val/uni_examples_val.txt": "436dfa865ffab37957e928e227a1b6cc836ab0e6b7652abbf5d06cdf5638dee4",
}


def fold_files(scene: str, val_scene: str | None = None) -> dict[Split, list[str]]:
    """Relative paths of the files in each split of a leave-one-out fold.

    With `val_scene` the fold validates on a scene it has never seen: that scene's whole recordings leave
    training and become the validation split, so that a choice made on validation is judged across scenes,
    as the test is, and still never reads the test scene.
    """
    for name in (scene, val_scene):
        if name is not None and name not in SCENES:
            raise InputError(f"unknown ETH/UCY scene {name!r}; choose one of {', '.join(SCENES)}")
    if val_scene == scene:
        raise InputError(f"val_scene must differ from the test scene {scene!r}")
    held_out = SCENES[scene] + (SCENES[val_scene] if val_scene else ())
    rest = [r for r in RECORDINGS if r not in held_out]
    return {
        "train": [f"train/{r}_train.txt" for r in rest],
        "val": ([f"all_data/{r}.txt" for r in SCENES[val_scene]] if val_scene
                else [f"val/{r}_val.txt" for r in rest]),
        "test": [f"all_data/{r}.txt" for r in SCENES[scene]],
    }


def prepare_eth_ucy(source: str | os.PathLike = PUBLIC_URL, dest: str | os.PathLike = "data/eth_ucy") -> Path:
    """Copy (from a directory) or download (from a URL, file:// included) the benchmark files into `dest`.

    Every file is checked against its sha256 and written atomically, so `dest` never holds a partial or
    altered file. Files already present with the right checksum are kept.
    """
    dest = Path(dest)
    is_url = "://" in str(source)
    for rel, digest in SHA256.items():
        target = dest / rel
        if target.is_file() and _sha256(target.read_bytes()) == digest:
            continue
        if is_url:
            url = f"{str(source).rstrip('/')}/{rel}"
            try:
                with urllib.request.urlopen(url, timeout=60) as response:
                    content = response.read()
            except (OSError, ValueError) as err:
                raise InputError(f"{url}: download failed ({err})") from None
        else:
            path = Path(source) / rel
            if not path.is_file():
                raise InputError(f"{path}: file not found; is {source} an ETH/UCY folder with all_data/, train/ and val/?")
            content = path.read_bytes()
        if _sha256(content) != digest:
            raise InputError(f"{rel}: checksum mismatch; this is not the ETH/UCY benchmark file")
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as tmp:
            tmp.write(content)
        os.replace(tmp.name, target)
        log.info("prepared %s", target)
    return dest


class EthUcyDataModule(TrackDataModule):
    """One leave-one-out fold of ETH/UCY, read from a folder filled by `prepare_eth_ucy`."""

    def __init__(self, scene: str = "zara1", root: str = "data/eth_ucy", val_scene: str | None = None,
                 **kwargs) -> None:
        kwargs.setdefault("dt", DT)
        super().__init__(**kwargs)
        self.files = fold_files(scene, val_scene)
        self.scene, self.root = scene, Path(root)

    def load_split(self, split: Split) -> list[TrackTable]:
        tables = []
        for rel in self.files[split]:
            path = self.root / rel
            if not path.is_file():
                raise InputError(f"{path}: file not found; prepare the data first with "
                                 f"`python -m cvae_traj.prepare_data source=<folder or URL>`")
            tables.append(validate_tracks(read_raw_eth_ucy(path), source=str(path), frame_step=FRAME_STEP))
        return tables


def _sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()
