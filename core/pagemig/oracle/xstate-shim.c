/*
 * LD_PRELOAD shim for Debian's linux.uml (Linux 6.1) on hosts whose FPU state is larger
 * than the buffer UML 6.1 keeps for it.
 *
 * Why: UML saves a guest process's FPU registers with PTRACE_GETREGSET(NT_X86_XSTATE)
 * into a fixed buffer and restores them with PTRACE_SETREGSET from the same buffer.  The
 * host kernel truncates the GET to the buffer, but refuses a SET that is not exactly its
 * full XSAVE size (arch/x86/kernel/fpu/regset.c, xstateregs_set: -EFAULT).  On a CPU with
 * AMX the full size is about 11 KiB and the guest's init dies before its first
 * instruction ("userspace - ptrace set fp regs failed, errno = 14").  Later UML kernels
 * size the buffer from the host; this shim does the same from outside: a SET shorter than
 * the host's state is completed with the rest of the tracee's current state (components
 * UML never saw and so never changed) and handed on at full size.  Every other ptrace
 * call passes through untouched, so on hosts where UML's buffer fits it changes nothing.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <elf.h>
#include <stdarg.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/types.h>
#include <sys/uio.h>

typedef long (*ptrace_fn)(int, pid_t, void *, void *);

long ptrace(enum __ptrace_request request, ...)
{
	static ptrace_fn real;
	static unsigned char full_state[1 << 16] __attribute__((aligned(64)));
	struct iovec full = { full_state, sizeof(full_state) };
	struct iovec *iov;
	va_list ap;
	pid_t pid;
	void *addr, *data;

	va_start(ap, request);
	pid = va_arg(ap, pid_t);
	addr = va_arg(ap, void *);
	data = va_arg(ap, void *);
	va_end(ap);
	if (!real)
		real = (ptrace_fn)dlsym(RTLD_NEXT, "ptrace");
	if (request != PTRACE_SETREGSET || (long)addr != NT_X86_XSTATE || !data)
		return real(request, pid, addr, data);
	iov = data;
	if (real(PTRACE_GETREGSET, pid, addr, &full) != 0 || full.iov_len <= iov->iov_len)
		return real(request, pid, addr, data);
	memcpy(full_state, iov->iov_base, iov->iov_len);
	return real(PTRACE_SETREGSET, pid, addr, &full);
}
