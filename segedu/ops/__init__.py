"""Operations taught by hand: upsampling, checkerboard artefacts, dilation, RoI pooling, distance transforms,
the permutohedral lattice.

Import the submodules (``segedu.ops.upsample``, ``segedu.ops.checkerboard``, ``segedu.ops.dilation``,
``segedu.ops.roi``, ``segedu.ops.boxes``, ``segedu.ops.distance``, ``segedu.ops.permutohedral``); the package itself defines nothing.
"""

__all__ = ["boxes", "checkerboard", "dilation", "distance", "permutohedral", "roi", "upsample"]
