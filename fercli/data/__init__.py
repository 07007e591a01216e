"""Images and datasets, the layer everything else stands on.

images       the one preprocessing and loader for every image (any format to 48x48 gray)
fastjpeg     its shortcut for plain gray JPEGs
resample     Pillow's LANCZOS in numpy, shared by images and hashing
hashing      perceptual hashes of images (the encoding; the search is fercli.clean.near_search)
dataset      the folder layout, scanning, split loading and the on-disk cache
splits       person-level splits of photo sets (wild-faces)
synth        the synthetic dataset (`fercli synth`)
csv_import   fer2013.csv to folders (`fercli import-csv`)
"""
