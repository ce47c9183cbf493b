"""From an image to a face crop: detectors, alignment, the crop pipeline, retries, pre-cut
crops, the low-resolution recipe and the choice of model per face.  Floor 3.
"""
