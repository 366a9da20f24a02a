"""Search spaces as data: one YAML file per space. Load them with ``nas.space.load_space``."""
