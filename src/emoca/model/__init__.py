"""Model layer: EMOCA/DECA composition, official checkpoint loading, fitting."""
