"""What a person reads: the LaTeX and Unicode printers, the write-up, the Markdown page,
``symderiv show``, and the files written."""
