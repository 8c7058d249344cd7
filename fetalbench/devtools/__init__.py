"""Developer tools beside the library: ``fetalbench bench`` measures fetalbench's speed."""
