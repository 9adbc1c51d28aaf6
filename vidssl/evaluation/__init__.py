"""Every ``vidssl eval``, over one feature source (:mod:`vidssl.features`) and one results writer.

    davis.py           ``vidssl eval davis``: mask propagation scored by J and F
    davis_metrics.py   DAVIS J and F (checked against davis2017-evaluation)
    jhmdb.py           ``vidssl eval jhmdb``: keypoint propagation scored by PCK
    jhmdb_metrics.py   PCK as CRW's and UVC's eval_pck.py compute it
    image_features.py  cached features of ImageFolder image sets, shared by linear and knn
    linear.py          ``vidssl eval linear``: logistic regression on frozen features
    knn.py             ``vidssl eval knn``: DINO's weighted k-NN
    invariance/        ``vidssl eval invariance``: Purushwalkam & Gupta's invariance measure
    results.py         the one writer of ``OUT/results.json``

Evaluation imports :mod:`vidssl.propagation` (DAVIS and JHMDB propagate before they score); the
reverse never happens. Devices follow :func:`vidssl.device.resolve_device`.
"""
