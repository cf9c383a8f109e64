// GET /: the status page. One self-contained document (no CDN, no build step): inline CSS, SVG
// for the rings, a canvas chart, vanilla JS polling /api/status every 2 s. The same bearer token
// as the API applies: a browser only gets here through a loopback bind or a proxy adding it.
#include "master/status_render.h"

namespace pccl::master {

namespace {

const char *const kPage = R"HTML(<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>pccl master</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
:root{--bg:#0f1419;--panel:#171d24;--line:#263140;--text:#d8dee6;--dim:#8593a3;--ok:#3fb950;
--warn:#d29922;--bad:#f85149;--accent:#58a6ff;--font:system-ui,-apple-system,"Segoe UI",sans-serif}
*{box-sizing:border-box}body{margin:0;background:var(--bg);color:var(--text);font:14px/1.4 var(--font)}
header{display:flex;gap:28px;align-items:baseline;padding:14px 22px;border-bottom:1px solid var(--line)}
header h1{font-size:18px;margin:0;font-weight:600}header .kv{color:var(--dim)}header .kv b{color:var(--text);font-size:16px}
#conn{margin-left:auto}.dot{display:inline-block;width:9px;height:9px;border-radius:50%;margin-right:6px}
main{display:grid;grid-template-columns:1.15fr 1fr;gap:16px;padding:16px 22px}
section{background:var(--panel);border:1px solid var(--line);border-radius:8px;padding:12px 14px;min-width:0}
section h2{font-size:12px;letter-spacing:.08em;text-transform:uppercase;color:var(--dim);margin:0 0 10px}
table{width:100%;border-collapse:collapse;font-variant-numeric:tabular-nums}
th{text-align:left;color:var(--dim);font-weight:500;font-size:12px;border-bottom:1px solid var(--line);padding:4px 6px}
td{padding:5px 6px;border-bottom:1px solid #1d2530;white-space:nowrap}td.mono,.mono{font-family:ui-monospace,monospace;font-size:12.5px}
.state{padding:1px 8px;border-radius:10px;font-size:12px}.s-accepted{background:#12351e;color:var(--ok)}
.s-pending{background:#3a2d0c;color:var(--warn)}.s-voting{background:#0f2a4a;color:var(--accent)}
#events{max-height:300px;overflow:auto;margin:0;padding:0;list-style:none}
#events li{padding:3px 0;border-bottom:1px solid #1d2530}#events .t{color:var(--dim);margin-right:8px}
.k-lost{color:var(--bad)}.k-admitted{color:var(--ok)}.k-vote,.k-master{color:var(--warn)}
.wide{grid-column:1 / -1}.muted{color:var(--dim)}svg text{fill:var(--text);font:12px var(--font)}
#counters span{display:inline-block;margin-right:18px}#counters b{font-size:18px}
</style></head><body>
<header><h1>pccl master</h1>
<span class="kv">epoch <b id="epoch">-</b></span><span class="kv">uptime <b id="uptime">-</b></span>
<span class="kv">peers <b id="npeers">-</b></span><span class="kv">groups <b id="ngroups">-</b></span>
<span class="kv">version <b id="version">-</b></span><span id="conn" class="kv"><span class="dot"></span>connecting</span></header>
<main>
<section><h2>Peers</h2><table><thead><tr><th>peer</th><th>group</th><th>rank</th><th>state</th><th>address</th>
<th>tx</th><th>rx</th><th>heartbeat</th></tr></thead><tbody id="peers"></tbody></table>
<div id="counters" style="margin-top:12px"></div></section>
<section><h2>Ring and link bandwidth</h2><div id="rings"></div></section>
<section class="wide"><h2 id="charttitle">Throughput</h2>
<canvas id="chart" height="170" style="width:100%"></canvas></section>
<section class="wide"><h2>Events</h2><ul id="events"></ul></section>
</main>
<script>
"use strict";
const $=id=>document.getElementById(id);
const hist=[];let prev=null;
const short=u=>u.slice(0,8);
function bytes(n){const u=["B","KB","MB","GB","TB"];let i=0;while(n>=1000&&i<4){n/=1000;i++}return n.toFixed(i?1:0)+" "+u[i]}
function rate(n){return n>0?bytes(n)+"/s":"-"}
function dur(s){s=Math.floor(s);const h=Math.floor(s/3600),m=Math.floor(s%3600/60);return (h?h+"h ":"")+(h||m?m+"m ":"")+s%60+"s"}
function el(tag,attrs,text){const e=document.createElementNS("http://www.w3.org/2000/svg",tag);
for(const k in attrs)e.setAttribute(k,attrs[k]);if(text!==undefined)e.textContent=text;return e}
function td(text,cls){const c=document.createElement("td");c.textContent=text;if(cls)c.className=cls;return c}
function peers(s){const body=$("peers");body.replaceChildren();
for(const p of s.peers){const tr=document.createElement("tr");const st=td("");
const b=document.createElement("span");b.className="state s-"+p.state;b.textContent=p.state;st.appendChild(b);
st.title=p.activity;const age=(s.now_unix_ms-p.last_heartbeat_unix_ms)/1000;
tr.append(td(short(p.uuid),"mono"),td(p.group),td(p.rank<0?"-":p.rank),st,td(p.data_address,"mono"),
td(p.stats?bytes(p.stats.tx_bytes):"-"),td(p.stats?bytes(p.stats.rx_bytes):"-"),td(age.toFixed(1)+" s ago"));
body.appendChild(tr)}
const c=s.counters,count=r=>c.collectives.filter(x=>x.kind!=="shared_state_sync"&&x.result===r).reduce((a,x)=>a+x.count,0);
const lost=Object.values(c.losses).reduce((a,x)=>a+x,0);
$("counters").innerHTML="";for(const [k,v] of [["collectives completed",count("completed")],["failed",
count("aborted")+count("mismatched")+count("timed_out")],["joins",c.joins],["losses",lost],["in flight",s.in_flight.length]]){
const e=document.createElement("span");e.innerHTML="<b></b> <span class=muted></span>";
e.firstChild.textContent=v;e.lastChild.textContent=k;$("counters").appendChild(e)}}
function rings(s){const box=$("rings");box.replaceChildren();
const links={};for(const l of s.links)links[l.from+">"+l.to]=l;
if(!s.rings.length){box.innerHTML="<p class=muted>no admitted peers</p>";return}
for(const g of s.rings){const n=g.order.length,W=460,H=n>1?300:120,R=Math.min(110,40+n*12),cx=W/2,cy=H/2;
const svg=el("svg",{viewBox:`0 0 ${W} ${H}`,width:"100%"});
svg.appendChild(el("text",{x:8,y:16,fill:"#8593a3"},`group ${g.group} · ${n} peer(s)`+
(g.shared_state_revision!==null?` · revision ${g.shared_state_revision}`:"")));
const pos=g.order.map((u,i)=>{const a=-Math.PI/2+2*Math.PI*i/n;return [cx+R*Math.cos(a),cy+R*Math.sin(a)]});
for(let i=0;n>1&&i<n;i++){const j=(i+1)%n,[x1,y1]=pos[i],[x2,y2]=pos[j],l=links[g.order[i]+">"+g.order[j]];
const bw=l?(l.reported_bytes_per_second||l.measured_bytes_per_second):0;
svg.appendChild(el("line",{x1,y1,x2,y2,stroke:bw?"#58a6ff":"#394656","stroke-width":bw?2.5:1.5}));
const mx=(x1+x2)/2,my=(y1+y2)/2,ox=(mx-cx)*0.28,oy=(my-cy)*0.28;
svg.appendChild(el("text",{x:mx+ox,y:my+oy,"text-anchor":"middle"},rate(bw)))}
g.order.forEach((u,i)=>{const p=s.peers.find(x=>x.uuid===u),[x,y]=pos[i];
svg.appendChild(el("circle",{cx:x,cy:y,r:17,fill:"#171d24",stroke:p&&p.state==="accepted"?"#3fb950":"#58a6ff","stroke-width":2}));
svg.appendChild(el("text",{x,y:y+4,"text-anchor":"middle"},String(i)));
svg.appendChild(el("text",{x,y:y+32,"text-anchor":"middle",fill:"#8593a3"},short(u)))});
box.appendChild(svg)}}
// Bytes sent per second by all peers (their reports); collectives per second until a peer reports.
let unit=null;
function chart(s){const bytesKnown=s.peers.some(p=>p.stats),t=s.now_unix_ms;
const tx=bytesKnown?s.peers.reduce((a,p)=>a+(p.stats?p.stats.tx_bytes:0),0):
s.counters.collectives.filter(x=>x.kind!=="shared_state_sync"&&x.result==="completed").reduce((a,x)=>a+x.count,0);
const u=bytesKnown?"bytes":"ops";if(u!==unit){hist.length=0;prev=null;unit=u;
$("charttitle").textContent=bytesKnown?"Throughput: bytes sent by all peers, last 10 minutes":"Collectives completed per second, last 10 minutes"}
if(prev&&t>prev.t)hist.push({t,v:Math.max(0,(tx-prev.tx)*1000/(t-prev.t))});prev={t,tx};
while(hist.length&&hist[0].t<t-600000)hist.shift();
const cv=$("chart"),dpr=window.devicePixelRatio||1,w=cv.clientWidth,h=170;cv.width=w*dpr;cv.height=h*dpr;
const g=cv.getContext("2d");g.scale(dpr,dpr);g.clearRect(0,0,w,h);const max=Math.max(1,...hist.map(p=>p.v))*1.15;
g.font="12px system-ui";g.fillStyle="#8593a3";g.strokeStyle="#263140";
for(let k=0;k<=3;k++){const y=10+(h-30)*k/3;g.beginPath();g.moveTo(70,y);g.lineTo(w,y);g.stroke();
g.fillText(unit==="bytes"?bytes(max*(1-k/3))+"/s":(max*(1-k/3)).toFixed(1)+"/s",4,y+4)}
g.fillText("-10 min",70,h-4);g.fillText("now",w-28,h-4);if(hist.length<2)return;
const X=p=>70+(w-70)*(1-(t-p.t)/600000),Y=p=>10+(h-30)*(1-p.v/max);
g.beginPath();g.moveTo(X(hist[0]),h-20);for(const p of hist)g.lineTo(X(p),Y(p));g.lineTo(X(hist[hist.length-1]),h-20);
g.fillStyle="rgba(88,166,255,.15)";g.fill();g.beginPath();hist.forEach((p,i)=>i?g.lineTo(X(p),Y(p)):g.moveTo(X(p),Y(p)));
g.strokeStyle="#58a6ff";g.lineWidth=2;g.stroke()}
function events(s){const ul=$("events");ul.replaceChildren();
for(const e of s.events.slice().reverse()){const li=document.createElement("li");const t=document.createElement("span");
t.className="t mono";t.textContent=new Date(e.at_unix_ms).toLocaleTimeString();const x=document.createElement("span");
x.className="k-"+e.kind;x.textContent=e.text;li.append(t,x);ul.appendChild(li)}}
function header(s,ok){$("epoch").textContent=s?s.epoch:"-";$("uptime").textContent=s?dur(s.uptime_seconds):"-";
$("npeers").textContent=s?s.peers.length:"-";$("ngroups").textContent=s?s.rings.length:"-";
$("version").textContent=s?s.version:"-";const c=$("conn");c.lastChild.textContent=ok?"live":"master unreachable";
c.firstChild.style.background=ok?"#3fb950":"#f85149"}
async function poll(){try{const r=await fetch("api/status",{cache:"no-store"});if(!r.ok)throw new Error(r.status);
const s=await r.json();header(s,true);peers(s);rings(s);chart(s);events(s)}catch(e){header(null,false)}
setTimeout(poll,2000)}
poll();
</script></body></html>
)HTML";

} // namespace

const std::string &statusPageHtml() {
    static const std::string page = kPage;
    return page;
}

} // namespace pccl::master
