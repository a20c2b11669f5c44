// tfevents.h: TensorBoard scalars without TensorFlow. A TFRecord file of
// protobuf Event messages, encoded by hand (the few fields TensorBoard reads
// for scalars), so `tensorboard --logdir runs` shows a dcal run.
//   record: uint64 length, uint32 masked CRC32C of the length bytes, the data,
//           uint32 masked CRC32C of the data (all little-endian)
//   Event:  1 wall_time (double), 2 step (int64), 3 file_version (string),
//           5 summary: Summary { repeated 1 value: Value { 1 tag, 2 simple_value (float) } }
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "core/common.h"

typedef struct {
    const char *tag;
    float value;
} TfScalar;

typedef struct {
    FILE *f;
    char tmp[DCAL_PATH_MAX + 64];    // where it is written until tfevents_publish
    char path[DCAL_PATH_MAX + 320];  // dir/events.out.tfevents.<time>.<host>
} TfEvents;

// One Event into buf: wall_time, step, then file_version when not NULL, then a
// Summary of the n scalars. Its length, or 0 when it does not fit in cap.
size_t tfevent_encode(unsigned char *buf, size_t cap, double wall_time, int64_t step, const char *file_version,
                      const TfScalar *v, int n);
// One TFRecord around data[0, n). 1 when every byte was written.
int tfrecord_write(FILE *f, const void *data, size_t n);

// Start an events file in dir under a temporary name, with the first record
// TensorBoard expects (file_version "brain.Event:2"). 0 after an error line.
int tfevents_open(TfEvents *e, const char *dir, double wall_time);
// One Event with the n scalars at step, flushed (TensorBoard reads it while the run goes on). 1 on success.
int tfevents_scalars(TfEvents *e, double wall_time, int64_t step, const TfScalar *v, int n);
// Give the file its TensorBoard name and remove the run's other events files
// (this one was rebuilt from the rows they held). 0 after an error line.
int tfevents_publish(TfEvents *e, const char *dir);
// Close; the temporary file of an unpublished one is removed. Safe on a zeroed TfEvents.
void tfevents_close(TfEvents *e);
