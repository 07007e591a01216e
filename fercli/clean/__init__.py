"""`fercli clean`: what is wrong with a dataset, and quarantine with undo.

pipeline       clean_dataset(): decode every image once, run the filters, the report
filters        what a clean filter sees and returns (the built-in ones are fercli.builtin)
near_search    near-duplicate search over perceptual hashes (fercli.data.hashing encodes)
near_verify    pixel verification of the pairs the search finds
near_edits     the edits (crops, shifts, brightness) the near-duplicate measurements use
duplicates     exact and near duplicate groups, and which member stays
leakage        evaluation images with a near duplicate in train (evaluate --leak-free)
quarantine     --apply's moves and --undo, never losing a file
report         the report's counts and files; contact_sheet: pictures of what was flagged
ray            the Ray Data actors of --engine ray
"""
