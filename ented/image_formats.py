"""What :mod:`ented.image_io` accepts: the image extensions and the pixel limit.

Apart from ``image_io`` (which imports torch and OpenCV) so that the command lines can name them in
``--help`` before anything heavy loads. ``image_io`` re-exports them; use them from either.
"""

from PIL import Image

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")

# PIL's own limit (``PIL.Image.MAX_IMAGE_PIXELS``, about 9459 x 9459), the one ``ented-restore``
# reads its photos under; the datasets and ``ented-prepare`` refuse larger images with it.
DEFAULT_MAX_IMAGE_PIXELS = int(Image.MAX_IMAGE_PIXELS or 89_478_485)
MAX_IMAGE_PIXELS_ENV = "ENTED_MAX_IMAGE_PIXELS"
