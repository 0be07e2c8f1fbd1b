"""Previews of remote series: the middle image by Instance Number, fetched into memory only."""

from __future__ import annotations

import numpy as np

from tests.peers import WORKSTATION_AET, OrthancPeer
from workstation.core.cache import QueryFilter
from workstation.core.model.node import Node
from workstation.core.net.find import find, instance_uids
from workstation.core.net.preview import fetch_preview
from workstation.core.pixels.image import ImageSource
from workstation.core.pixels.render import thumbnail


def test_the_preview_is_the_middle_image_of_the_series_and_renders(orthanc: OrthancPeer):
    node = Node("pacs", orthanc.aet, "127.0.0.1", orthanc.port, connect_timeout=3, network_timeout=15)
    study = next(s for s in find(node, WORKSTATION_AET, "study", QueryFilter(PatientID="PLASTIC"))
                 if s.NumberOfStudyRelatedInstances == 141).StudyInstanceUID
    series = max(find(node, WORKSTATION_AET, "series", QueryFilter(StudyInstanceUID=study)),
                 key=lambda s: s.NumberOfSeriesRelatedInstances).SeriesInstanceUID
    numbers = sorted(n for _, n in instance_uids(node, WORKSTATION_AET, study, series, numbered=True))
    assert len(numbers) == 140

    ds = fetch_preview(node, WORKSTATION_AET, study, series)
    assert ds.SeriesInstanceUID == series and int(ds.InstanceNumber) == numbers[70]
    assert ds.file_meta.TransferSyntaxUID and "PixelData" in ds
    small = thumbnail(ImageSource.from_dataset(ds), 64)
    assert max(small.shape[:2]) <= 64 and small.dtype == np.uint8 and small.std() > 0
