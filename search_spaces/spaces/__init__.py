"""Search spaces by family; each module has PRESETS and create(name, config, sparse)."""
