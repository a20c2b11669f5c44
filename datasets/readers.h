// readers.h: one index reader per on-disk layout (private to datasets/). A
// reader sees only index.h; the registry (registry.c) names it in its row.
// Calls run one way: dataset.c → registry.c → readers → index.c.
#pragma once
#include "datasets/index.h"

int cub_read(IndexBuild *b);        // cub.c: CUB-200-2011 layout (also synthetic)
int cars_read(IndexBuild *b);       // cars.c: CSV layout
int aircraft_read(IndexBuild *b);   // aircraft.c: fgvc-aircraft-2013b layout
