// registry_int.h: the part of the registry only dataset_open needs — a row's
// reader. Kept out of registry.h so config/ and compliance/ see facts, not readers.
#pragma once
#include "datasets/index.h"
#include "datasets/registry.h"

// The reader of a registry row (info from dataset_info / dataset_info_at).
IndexReader dataset_reader(const DatasetInfo *info);
