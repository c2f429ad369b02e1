"""Other messengers queried around the GW event: ZTF optical candidates, Fermi GBM."""

from __future__ import annotations

from llama.handler import FileHandler
from llama.handlers.gw import SkymapInfo


class ZtfTriggerList(FileHandler):
    """ZTF optical candidates in the GW region (queried when ONLINE)."""

    FILENAME = "ztf_trigger_list.json"
    DEPENDENCIES = (SkymapInfo,)
    CONTACTS_SERVICE = True


class FermiGRBsJSON(FileHandler):
    """Fermi GBM bursts near the GW time (queried when ONLINE)."""

    FILENAME = "fermi_grbs.json"
    DEPENDENCIES = (SkymapInfo,)
    CONTACTS_SERVICE = True
