// SPDX-License-Identifier: GPL-2.0
/*
 * A load beyond EOF through a mapping of a huge-page tmpfs file succeeds,
 * where POSIX and mmap(2) say it raises SIGBUS.
 *
 * tmpfs mounted huge=always gives a file a 2 MiB folio for its last,
 * partial 2 MiB even where that folio reaches past EOF.  shmem's ->fault
 * itself refuses an index past EOF (shmem_get_folio_gfp()), but the fault
 * that maps the folio below EOF does not stop at i_size for such a folio
 * (fault-around, filemap_map_pages(), and finish_fault(), which may map the
 * whole folio, by one PMD where the mapping allows), so the pages past EOF
 * become readable and writable through the mapping, where an access must
 * raise SIGBUS.  Here it happens through PTEs (FilePmdMapped 0 kB), on
 * Debian's 6.1 and 6.12 alike.  Found by vmcoh-race's truncate-vs-fault
 * scenario ("access-beyond-eof"); see issue 15.
 *
 * Upstream keeps it, for tmpfs only.  74207de2ba10 ("mm/memory: do not
 * populate page table entries beyond i_size", Kiryl Shutsemau, 6.18, Cc
 * stable) stops filemap_map_pages() and finish_fault() from mapping past
 * i_size (fstests generic/749, for xfs's large folios), and names this case
 * ("With huge=always tmpfs, any write to a file leads to PMD-size
 * allocation. Following the fault-in of the folio will install PMD mapping
 * regardless of i_size."), but makes "an exception for shmem/tmpfs that for
 * long time intentionally mapped with PMDs across i_size"; the series'
 * cover letter argues no workload relies on that SIGBUS.  And shmem's own
 * ->fault returns a folio it finds in the cache without looking at i_size.
 * So this exits 1 on 6.18 as well (6.18.44, checked): a deviation from
 * POSIX that upstream chose, since huge tmpfs came in 4.8 (800d8c63b2e9,
 * "shmem: add huge pages support").  The harness marks it expected.
 *
 * A second way in, with any huge= option that gives huge folios (always,
 * within_size): a shrink that cannot split the huge folio straddling the new
 * EOF.  The harness's readers hold references that make the split fail; here
 * a vmsplice()'d page of the folio does.  truncate_inode_partial_folio()
 * then zeroes the part past EOF but leaves the whole folio in the page cache,
 * and the next fault below EOF maps its pages past EOF as above (the case
 * of 74207de2ba10's companion, "mm/truncate: unmap large folio on split
 * failure", again with tmpfs excepted).  "always" shows the first way,
 * "split-fails" the second (on huge=within_size).  Both exit 1 on Debian's
 * 6.1 and 6.12 and on 6.18.44.
 *
 * Run as root (it mounts its own tmpfs).  Exit 1 if the bug is there, 0 if
 * the load past EOF raised SIGBUS, 2 if the test could not be set up (no
 * THP, or the folio was not huge: nothing was shown either way).
 *
 *     cc -O2 -o tmpfs-huge-beyond-eof tmpfs-huge-beyond-eof.c
 *     ./tmpfs-huge-beyond-eof [always|split-fails]
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
#include <sys/uio.h>
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

/*
 * The file's last 2 MiB in a huge folio with EOF inside it.  "always": sized
 * first, then written below EOF (huge=always allocates the whole folio).
 * "split-fails": written whole at 8 MiB (within_size gives it a huge folio),
 * mapped, one page of it pinned by vmsplice() into @pipefd, then shrunk.
 */
static int make_file(int fd, char *map, int split_fails, const int pipefd[2])
{
	static char page[4096];
	struct iovec iov = { .iov_base = map + 3 * HPAGE, .iov_len = sizeof(page) };
	unsigned long off;

	if (!split_fails)
		return ftruncate(fd, FILE_SIZE) ||
		       pwrite(fd, "x", 1, BELOW_EOF) != 1 ? -1 : 0;
	memset(page, 'x', sizeof(page));
	if (ftruncate(fd, MAP_LEN))
		return -1;
	for (off = 3 * HPAGE; off < MAP_LEN; off += sizeof(page))
		if (pwrite(fd, page, sizeof(page), off) != sizeof(page))
			return -1;
	if (vmsplice(pipefd[1], &iov, 1, 0) != sizeof(page))
		return -1;
	return ftruncate(fd, FILE_SIZE);
}

int main(int argc, char **argv)
{
	char dir[] = "/tmp/tmpfs-huge-beyond-eof.XXXXXX";
	char path[64];
	struct sigaction sa = { .sa_handler = on_sigbus };
	int split_fails = argc > 1 && !strcmp(argv[1], "split-fails");
	int fd = -1, bug, status = 2;
	int pipefd[2] = { -1, -1 };
	char *map = MAP_FAILED;
	long pmd_kb;

	if (argc > 2 || (argc == 2 && !split_fails && strcmp(argv[1], "always"))) {
		fprintf(stderr, "usage: %s [always|split-fails]\n", argv[0]);
		return 2;
	}
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 2;
	}
	if (mount("tmpfs", dir, "tmpfs", 0,
		  split_fails ? "huge=within_size,size=64m" : "huge=always,size=64m")) {
		perror("mount tmpfs huge= (root, and a kernel with THP)");
		rmdir(dir);
		return 2;
	}
	snprintf(path, sizeof(path), "%s/f", dir);
	fd = open(path, O_RDWR | O_CREAT, 0600);
	if (fd >= 0)
		map = mmap(NULL, MAP_LEN, PROT_READ, MAP_SHARED, fd, 0);
	if (fd < 0 || map == MAP_FAILED || pipe(pipefd) ||
	    make_file(fd, map, split_fails, pipefd)) {
		perror(path);
		goto out;
	}
	sigaction(SIGBUS, &sa, NULL);
	if (load_faults(map + BELOW_EOF)) {
		fprintf(stderr, "a load below EOF raised SIGBUS\n");
		goto out;
	}
	pmd_kb = file_pmd_mapped_kb(map);
	bug = !load_faults(map + BEYOND_EOF);
	printf("%s (%s): size %#lx; load at %#lx (below EOF) ok, FilePmdMapped %ld kB; "
	       "load at %#lx (beyond EOF): %s\n",
	       path, split_fails ? "split-fails" : "always", FILE_SIZE, BELOW_EOF, pmd_kb,
	       BEYOND_EOF, bug ? "succeeded - BUG: it must raise SIGBUS" : "SIGBUS, as it must");
	if (bug)
		status = 1;
	else if (pmd_kb <= 0 && !split_fails)
		fprintf(stderr, "no PMD mapping: the folio was not huge, nothing shown\n");
	else
		status = 0;
out:
	if (map != MAP_FAILED)
		munmap(map, MAP_LEN);
	if (fd >= 0)
		close(fd);
	if (pipefd[0] >= 0) {
		close(pipefd[0]);
		close(pipefd[1]);
	}
	umount(dir);
	rmdir(dir);
	return status;
}
