# Keel KVM probe firmware: real mode -> protected mode -> long mode with paging,
# then exit QEMU through isa-debug-exit (port 0xf4) with value 0x31 (status 99).
# Loaded as a 64 KiB BIOS at 0xF0000; reset vector at offset 0xFFF0.
        .code16
        .org 0
start16:
        cli
        xorw %ax, %ax
        movw %ax, %ds
        lgdtl %cs:(gdtdesc - start16)
        movl %cr0, %eax
        orl $1, %eax
        movl %eax, %cr0
        ljmpl $0x08, $(0xF0000 + start32 - start16)

        .code32
start32:
        movw $0x10, %ax
        movw %ax, %ds
        movw %ax, %es
        movw %ax, %ss
        movl $0x8000, %esp
        # page tables at 0x1000 (PML4), 0x2000 (PDPT), 0x3000 (PD): identity 2 MiB
        movl $0x1000, %edi
        xorl %eax, %eax
        movl $(3*1024), %ecx
        rep stosl
        movl $0x2003, 0x1000
        movl $0x3003, 0x2000
        movl $0x00000083, 0x3000
        movl %cr4, %eax
        orl $0x620, %eax          # PAE | OSFXSR | OSXMMEXCPT
        movl %eax, %cr4
        movl $0x1000, %eax
        movl %eax, %cr3
        movl $0xC0000080, %ecx    # EFER
        rdmsr
        orl $0x100, %eax          # LME
        wrmsr
        movl %cr0, %eax
        orl $0x80000000, %eax     # PG
        movl %eax, %cr0
        ljmpl $0x18, $(0xF0000 + start64 - start16)

        .code64
start64:
        movl $1, %eax
        cpuid
        rdtsc
        pxor %xmm0, %xmm0
        movq $0x31, %rax
        outb %al, $0xf4
1:      hlt
        jmp 1b

        .balign 8
gdt:
        .quad 0
        .quad 0x00CF9A000000FFFF   # 0x08 code32
        .quad 0x00CF92000000FFFF   # 0x10 data
        .quad 0x00AF9A000000FFFF   # 0x18 code64
gdtdesc:
        .word gdtdesc - gdt - 1
        .long 0xF0000 + gdt - start16

        .org 0xFFF0
        .code16
        ljmp $0xF000, $0
        .org 0x10000
