"""Copy a `vidssl tracks` folder for a `vidssl prepare`d (resized) copy of its videos: boxes scaled
to the prepared videos' pixels, tracks.json pointing at the prepared folder."""
import dataclasses
import sys
from pathlib import Path

from vidssl.data.backends import open_video
from vidssl.data.tracks import csv_path, read_manifest, read_tracks, write_manifest, write_tracks_csv

src, prepared, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
manifest = read_manifest(src)
for rel, tracks in read_tracks(src).items():
    reader = open_video(prepared / rel)
    height, width = reader.get_frames([0]).shape[1:3]
    reader.close()
    info = manifest["videos"][rel]
    sx, sy = width / info["width"], height / info["height"]
    scaled = [dataclasses.replace(t, boxes=t.boxes * [sx, sy, sx, sy]) for t in tracks]
    write_tracks_csv(csv_path(out, rel), scaled)
    manifest["videos"][rel] |= {"width": width, "height": height}
manifest["data"] = str(prepared.resolve())
write_manifest(out, manifest)
print(f"{len(manifest['videos'])} videos scaled into {out}")
