#!py
"""Pillar `kiss`: pillar/cluster.yml and the allocation cache vm-config/<cluster>.yml.

The site directory is the minion option `kiss_site` (default /srv/kiss-configure).
"""

from kisscluster import pillar as kiss_pillar  # `pillar` is the py renderer's own global
from kisscluster.paths import SITE_DIR


def run():
    return {"kiss": kiss_pillar.build(__opts__.get("kiss_site", SITE_DIR))}  # noqa: F821
