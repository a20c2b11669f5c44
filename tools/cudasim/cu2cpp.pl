#!/usr/bin/perl
# cu2cpp.pl IN.cu OUT.cpp [PLANT]: turns a kernels/*.cu file into C++ for cudasim
# (tools/cudasim/README.md). Lines are kept, and #line names the .cu file, so
# compiler messages point at the original. Three rewrites:
#   k<<<g, b, smem, stream>>>(args)   → cudasim::launch(k, "k", cudasim::cfg(g, b, smem, stream), args)
#   extern __shared__ T name[];       → T *name = (T *)cudasim::shared_dynamic();
#   __shared__ T a[N], *b[M];         → CUDASIM_SHARED(T, a, [N]); CUDASIM_SHARED(T *, b, [M]);
# PLANT (tests only, planted/*.plant): "find:\n<text>\nreplace:\n<text>\n" after any
# header lines; the find text must occur exactly once. It plants a known bug
# that the parity suite must catch (expect_caught.sh).
use strict;
use warnings;

my ($in, $out, $plant) = @ARGV;
die "usage: cu2cpp.pl IN.cu OUT.cpp [PLANT]\n" unless defined $out;
open(my $fh, '<', $in) or die "cu2cpp: $in: $!\n";
my $src = do { local $/; <$fh> };
close $fh;

if (defined $plant) {
    open(my $ph, '<', $plant) or die "cu2cpp: $plant: $!\n";
    my $p = do { local $/; <$ph> };
    close $ph;
    my ($find, $repl) = $p =~ /(?:\A|\n)find:\n(.*?)\nreplace:\n(.*?)\n?\z/s
        or die "cu2cpp: $plant: expected 'find:' and 'replace:' sections\n";
    my $n = () = $src =~ /\Q$find\E/g;
    die "cu2cpp: $plant: the find text occurs $n times in $in (want exactly 1; did the kernel change?)\n" if $n != 1;
    $src =~ s/\Q$find\E/$repl/;
}

# Launches. The kernel may be a template-id (name<HD>); the configuration may hold
# template-ids too (FwdSmem<HD>::bytes), hence the non-greedy match up to >>>.
$src =~ s{\b(\w+(?:<[\w\s,]*>)?)\s*<<<([^;]*?)>>>\s*\(\s*\)}{cudasim::launch($1, "$1", cudasim::cfg($2))}gs;
$src =~ s{\b(\w+(?:<[\w\s,]*>)?)\s*<<<([^;]*?)>>>\s*\(}{cudasim::launch($1, "$1", cudasim::cfg($2), }gs;

# Dynamic shared memory.
$src =~ s{\bextern\s+__shared__\s+(?:__align__\(\s*\d+\s*\)\s+)?([\w\s]*?\w)\s+(\w+)\s*\[\s*\]\s*;}
         {$1 *$2 = ($1 *)cudasim::shared_dynamic();}g;

# Static shared memory: one CUDASIM_SHARED per declarator.
sub shared_decl {
    my ($decl) = @_;
    my @parts = split /,/, $decl;
    my $first = shift @parts;
    $first =~ /^\s*(.*?)\s*(\**)\s*(\w+)\s*((?:\[[^\]]*\])*)\s*$/s or die "cu2cpp: $in: cannot parse __shared__ $decl\n";
    my ($base, @out) = ($1);
    push @out, "CUDASIM_SHARED($base" . ($2 ? " $2" : "") . ", $3, $4)";
    for my $d (@parts) {
        $d =~ /^\s*(\**)\s*(\w+)\s*((?:\[[^\]]*\])*)\s*$/s or die "cu2cpp: $in: cannot parse __shared__ $decl\n";
        push @out, "CUDASIM_SHARED($base" . ($1 ? " $1" : "") . ", $2, $3)";
    }
    return join('; ', @out) . ';';
}
$src =~ s{\b__shared__\s+(?:__align__\(\s*\d+\s*\)\s+)?([^;=]*);}{shared_decl($1)}ge;
die "cu2cpp: $in: a __shared__ declaration was left (initialiser?)\n" if $src =~ /\b__shared__\b/;
if ($src =~ /^(.*<<<.*)$/m) { die "cu2cpp: $in: a launch was left: $1\n" }

open(my $oh, '>', $out) or die "cu2cpp: $out: $!\n";
print $oh "#line 1 \"$in\"\n$src";
close $oh;
