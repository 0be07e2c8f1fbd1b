"""What DICOM headers say, read once and fast, for the cache, the pixel pipeline and the network alike.

`values` reads element values (plain ones straight from the raw bytes), `dates` DA and TM values in
whatever form a file writes them, `geometry` the image planes, `frames` the size of native pixel
data, `header` the partial read of a file up to its Image Pixel module with the native Pixel Data
element found at its end, `codecs` whether a transfer syntax can be decoded here, and `slices` the
typed record volume assembly needs of each slice.
"""
