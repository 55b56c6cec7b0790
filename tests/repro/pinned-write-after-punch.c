// SPDX-License-Identifier: GPL-2.0
/*
 * A write through a GUP pin taken before a hole punch shows in the file
 * after the punch and after a later write(2) returned.
 *
 * process_vm_writev() pins the destination page (pin_user_pages_remote()),
 * then copies from the source buffer.  The source here is a userfaultfd
 * page, so the copy stops there, pin held, until this program resolves the
 * fault.  Meanwhile it punches the pinned page out of the file and writes
 * new data ('B') with pwrite(); then it lets the pinned copy ('A') go.
 *
 * A page-cache file system removes the punched page from the cache, so the
 * late copy lands in a page nobody reads: the file reads 'B'.  On tmpfs with
 * huge pages the page is part of a huge folio the punch cannot split while
 * it is pinned; truncate_inode_partial_folio() zeroes the range and leaves
 * the folio in the cache, the pwrite() writes into that same folio, and the
 * late copy overwrites it: the file reads 'A' after the write of 'B'
 * returned.  (fs/dax.c orders this by making the punch wait for the pin,
 * dax_layout_busy_page(), and so does /dev/vmcoh's window, by making the
 * write wait; the page cache does neither.)  Found by vmcoh-race's
 * pin-vs-punch scenario on huge=always and huge=within_size tmpfs (issue 15).
 *
 * Usage: pinned-write-after-punch [DIR]
 * Without DIR it mounts its own tmpfs with huge=always (root); with DIR it
 * uses a file there (any file system, e.g. plain tmpfs as the control).
 * Exit 1 if the file reads the pinned write after the later write, 0 if it
 * reads the later write, 2 on a setup error (userfaultfd needs root, or
 * vm.unprivileged_userfaultfd=1).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#define PAGE	4096UL
#define HPAGE	(2UL << 20)

static char *trap, *map;
static ssize_t copied;

static void *pinned_copy(void *arg)
{
	struct iovec local = { .iov_base = trap, .iov_len = PAGE };
	struct iovec remote = { .iov_base = map, .iov_len = PAGE };

	(void)arg;
	copied = process_vm_writev(getpid(), &local, 1, &remote, 1, 0);
	return NULL;
}

int main(int argc, char **argv)
{
	static char page[PAGE];
	char dir[] = "/tmp/pinned-write-after-punch.XXXXXX";
	const char *where = argc > 1 ? argv[1] : dir;
	struct uffdio_api api = { .api = UFFD_API };
	struct uffdio_register reg = { .mode = UFFDIO_REGISTER_MODE_MISSING };
	struct uffdio_copy copy = { 0 };
	struct uffd_msg msg;
	struct pollfd pfd;
	char path[256], got;
	int fd = -1, uffd, status = 2, mounted = 0;
	pthread_t thread;

	if (argc == 1) {
		if (!mkdtemp(dir) || mount("tmpfs", dir, "tmpfs", 0, "huge=always,size=64m")) {
			perror("mount tmpfs huge=always (root, and a kernel with THP)");
			return 2;
		}
		mounted = 1;
	}
	snprintf(path, sizeof(path), "%s/f", where);
	uffd = syscall(SYS_userfaultfd, O_CLOEXEC);
	if (uffd < 0 || ioctl(uffd, UFFDIO_API, &api)) {
		perror("userfaultfd");
		goto out;
	}
	trap = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	reg.range.start = (unsigned long)trap;
	reg.range.len = PAGE;
	if (trap == MAP_FAILED || ioctl(uffd, UFFDIO_REGISTER, &reg)) {
		perror("UFFDIO_REGISTER");
		goto out;
	}
	/* The whole first 2 MiB written: one huge folio on huge=always. */
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	memset(page, 'A', PAGE);
	for (unsigned long off = 0; fd >= 0 && off < HPAGE; off += PAGE)
		if (pwrite(fd, page, PAGE, off) != PAGE)
			break;
	map = fd < 0 ? MAP_FAILED : mmap(NULL, HPAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED) {
		perror(path);
		goto out;
	}

	pthread_create(&thread, NULL, pinned_copy, NULL);
	pfd = (struct pollfd){ .fd = uffd, .events = POLLIN };
	if (poll(&pfd, 1, 5000) != 1 || read(uffd, &msg, sizeof(msg)) != sizeof(msg)) {
		fprintf(stderr, "process_vm_writev() never reached the trap page\n");
		goto out;
	}
	/* Page 0 is pinned now.  Punch it, then write 'B' there. */
	memset(page, 'B', PAGE);
	if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, PAGE) ||
	    pwrite(fd, page, PAGE, 0) != PAGE) {
		perror("punch, then pwrite");
		goto out;
	}
	/* Let the pinned copy of 'A' go. */
	memset(page, 'A', PAGE);
	copy.dst = (unsigned long)trap;
	copy.src = (unsigned long)page;
	copy.len = PAGE;
	if (ioctl(uffd, UFFDIO_COPY, &copy)) {
		perror("UFFDIO_COPY");
		goto out;
	}
	pthread_join(thread, NULL);
	if (copied != (ssize_t)PAGE || pread(fd, &got, 1, 0) != 1) {
		perror("process_vm_writev or pread");
		goto out;
	}
	printf("%s: after the punch and pwrite('B') returned, the file reads '%c'%s\n", path, got,
	       got == 'A' ? " - BUG: the write through the pin landed after them" : "");
	status = got == 'A' ? 1 : 0;
out:
	if (fd >= 0) {
		close(fd);
		unlink(path);
	}
	if (mounted) {
		umount(dir);
		rmdir(dir);
	}
	return status;
}
