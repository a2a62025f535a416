// Appends 256 MiB to a file and prints the time per 4 KiB page. Mode 0: 4 KiB writes; mode 1:
// each CHUNK KiB first written with zeros in one write, then overwritten 4 KiB at a time;
// mode 2: 64 KiB writes. Write-back starts every MiB, as the engine starts it.
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
  int mode = atoi(argv[1]);
  size_t chunk = (size_t)atoi(argv[2]) << 10, total = 256 << 20;
  static char data[64 << 10], zeros[1 << 20];
  memset(data, 7, sizeof data);
  int fd = open(argv[3], O_CREAT | O_TRUNC | O_RDWR, 0644);
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (size_t off = 0; off < total;) {
    size_t n = mode == 2 ? 64 << 10 : 4 << 10;
    if (mode == 1 && off % chunk == 0) pwrite(fd, zeros, chunk, off);
    pwrite(fd, data, n, off);
    off += n;
    if (off % (1 << 20) == 0) sync_file_range(fd, off - (1 << 20), 1 << 20, SYNC_FILE_RANGE_WRITE);
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double us = (t1.tv_sec - t0.tv_sec) * 1e6 + (t1.tv_nsec - t0.tv_nsec) / 1e3;
  printf("mode %d: %.2f us per 4 KiB page\n", mode, us / (total >> 12));
  close(fd);
  unlink(argv[3]);
  return 0;
}
