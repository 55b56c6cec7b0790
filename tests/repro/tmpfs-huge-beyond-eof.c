// SPDX-License-Identifier: GPL-2.0
/*
 * A load beyond EOF through a mapping of a huge-page tmpfs file succeeds,
 * where POSIX and mmap(2) say it raises SIGBUS.
 *
 * tmpfs mounted huge=always gives a file a 2 MiB folio for its last,
 * partial 2 MiB even where that folio reaches past EOF, and the faults that
 * map a large folio do not all look at i_size: fault-around
 * (filemap_map_pages()) and finish_fault(), which may map the whole folio by
 * one PMD.  The pages past EOF are then readable and writable through the
 * mapping, where an access must raise SIGBUS.  Here it happens through PTEs
 * (FilePmdMapped 0 kB), on Debian's 6.1 and 6.12 alike.  Found by vmcoh-race's
 * truncate-vs-fault scenario ("access-beyond-eof"); see issue 15.
 *
 * Upstream: 74207de2ba10 ("mm/memory: do not populate page table entries
 * beyond i_size", Kiryl Shutsemau, 6.18), whose log names this case ("With
 * huge=always tmpfs, any write to a file leads to PMD-size allocation.
 * Following the fault-in of the folio will install PMD mapping regardless
 * of i_size.") and fixes 800d8c63b2e9 ("shmem: add huge pages support",
 * 4.8); with it, "mm/truncate: unmap large folio on split
 * failure", for a folio already mapped when a truncation cannot split it.
 *
 * Run as root (it mounts its own tmpfs).  Exit 1 if the bug is there, 0 if
 * the load past EOF raised SIGBUS, 2 if the test could not be set up (no
 * THP, or the folio was not huge: nothing was shown either way).
 *
 *     cc -O2 -o tmpfs-huge-beyond-eof tmpfs-huge-beyond-eof.c && ./tmpfs-huge-beyond-eof
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <unistd.h>

#define HPAGE		(2UL << 20)
#define MAP_LEN		(4 * HPAGE)
/* EOF inside the last 2 MiB: 0x7cd000, as in the harness's first report. */
#define FILE_SIZE	(3 * HPAGE + 0x1cd000)
#define BELOW_EOF	(FILE_SIZE - 0x1000)
#define BEYOND_EOF	(3 * HPAGE + 0x1ee000)

static sigjmp_buf probe;

static void on_sigbus(int sig)
{
	(void)sig;
	siglongjmp(probe, 1);
}

/* Does a load at @p raise SIGBUS? */
static int load_faults(volatile const char *p)
{
	if (sigsetjmp(probe, 1))
		return 1;
	(void)*p;
	return 0;
}

/* How much of the VMA at @start PMDs map: FilePmdMapped in /proc/self/smaps. */
static long file_pmd_mapped_kb(const void *start)
{
	char line[256];
	unsigned long from, to;
	int ours = 0;
	long kb = -1;
	FILE *smaps = fopen("/proc/self/smaps", "r");

	if (!smaps)
		return -1;
	while (fgets(line, sizeof(line), smaps)) {
		if (sscanf(line, "%lx-%lx ", &from, &to) == 2)
			ours = from == (unsigned long)start;
		else if (ours && sscanf(line, "FilePmdMapped: %ld kB", &kb) == 1)
			break;
	}
	fclose(smaps);
	return kb;
}

int main(void)
{
	char dir[] = "/tmp/tmpfs-huge-beyond-eof.XXXXXX";
	char path[64];
	struct sigaction sa = { .sa_handler = on_sigbus };
	int fd, bug, status = 2;
	char *map;
	long pmd_kb;

	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 2;
	}
	if (mount("tmpfs", dir, "tmpfs", 0, "huge=always,size=64m")) {
		perror("mount tmpfs huge=always (root, and a kernel with THP)");
		rmdir(dir);
		return 2;
	}
	snprintf(path, sizeof(path), "%s/f", dir);
	fd = open(path, O_RDWR | O_CREAT, 0600);
	if (fd < 0 || ftruncate(fd, FILE_SIZE) ||
	    pwrite(fd, "x", 1, BELOW_EOF) != 1) {
		perror(path);
		goto out;
	}
	map = mmap(NULL, MAP_LEN, PROT_READ, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED) {
		perror("mmap");
		goto out;
	}
	sigaction(SIGBUS, &sa, NULL);
	if (load_faults(map + BELOW_EOF)) {
		fprintf(stderr, "a load below EOF raised SIGBUS\n");
		goto out;
	}
	pmd_kb = file_pmd_mapped_kb(map);
	bug = !load_faults(map + BEYOND_EOF);
	printf("%s: size %#lx; load at %#lx (below EOF) ok, FilePmdMapped %ld kB; "
	       "load at %#lx (beyond EOF): %s\n",
	       path, FILE_SIZE, BELOW_EOF, pmd_kb, BEYOND_EOF,
	       bug ? "succeeded - BUG: it must raise SIGBUS" : "SIGBUS, as it must");
	if (bug)
		status = 1;
	else if (pmd_kb <= 0)
		fprintf(stderr, "no PMD mapping: the folio was not huge, nothing shown\n");
	else
		status = 0;
	munmap(map, MAP_LEN);
out:
	if (fd >= 0)
		close(fd);
	umount(dir);
	rmdir(dir);
	return status;
}
