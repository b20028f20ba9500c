"""What every stage shares: expression nodes and builders, the model, the spelling of
names, and what TeX may read of a spelling."""
