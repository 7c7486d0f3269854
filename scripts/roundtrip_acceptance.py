#!/usr/bin/env python3
# Issue-2 acceptance through the CLI: gear roundtrip on [256,128] keys and values
# (block 256, 2 bits, group 64, outliers 0.02, rank 2, 3 iterations) against an
# independent min/max quantizer written here.  Needs numpy; run from a build tree:
#   python3 scripts/roundtrip_acceptance.py [path/to/gear]
# Writes its .npy files in the current directory.
import numpy as np, subprocess, json, sys
G=sys.argv[1] if len(sys.argv) > 1 else './tools/gear/gear'
rng=np.random.default_rng(7)
T,d=256,128
# structured: keys have a few outlier channels with large magnitude; values heavy-tailed per token
chs=rng.standard_normal(d)*0.5+1; chs[rng.choice(d,6,replace=False)]*=12
K=(rng.standard_normal((T,d))*chs + 0.3*rng.standard_normal(d)).astype(np.float32)
V=(rng.standard_t(3,(T,d))*0.5).astype(np.float32)
def indep(X,kind,bits=2,g=64):
    X=X.astype(np.float16).astype(np.float64)
    A = X if kind=='value' else X.T
    out=np.empty_like(A)
    for r in range(A.shape[0]):
        for s in range(0,A.shape[1],g):
            x=A[r,s:s+g]; lo,hi=x.min(),x.max(); n=2**bits-1
            if hi==lo: out[r,s:s+g]=x; continue
            st=(hi-lo)/n; q=np.clip(np.round((x-lo)/st),0,n); out[r,s:s+g]=q*st+lo
    return out if kind=='value' else out.T
for kind,X in (('key',K),('value',V)):
    np.save(f'{kind}.npy',X)
    res={}
    for p in ('kivi2','gearl2','gear2'):
        o=subprocess.run([G,'roundtrip','--preset',p,'--bits','2','--group','64','--outliers','0.02' if p=='gear2' else '0','--rank','0' if p=='kivi2' else '2','--iters','3','--block','256','--kind',kind,'--in',f'{kind}.npy','--out',f'{kind}_{p}.npy'],capture_output=True,text=True,check=True).stdout
        j=json.loads(o); res[p]=j
        print(kind,p,'bpe',j['bpe'],'bpe_formula',j['bpe_formula'],'rel_err %.5f'%j['rel_err'],'outl',j['outlier_fraction'])
    e=np.linalg.norm(X-indep(X,kind))/np.linalg.norm(X)
    print(kind,'independent minmax 2-bit rel_err %.5f, kivi2 differs by %.3f%%'%(e,100*abs(res['kivi2']['rel_err']-e)/e))
