(()=>{const b=document.body,chip=document.getElementById('chip'),tzb=document.getElementById('tz');
let zone=localStorage.getItem('valor-tz')||'utc',last=0,state='connecting',es=null,retry=1000;
const pad=n=>String(n).padStart(2,'0');
function fmt(ms){const d=new Date(ms);if(zone==='local'){return d.getFullYear()+'-'+pad(d.getMonth()+1)+'-'+pad(d.getDate())+' '+pad(d.getHours())+':'+pad(d.getMinutes())+':'+pad(d.getSeconds())}return d.toISOString().slice(0,19).replace('T',' ')+' UTC'}
function ago(ms){const s=Math.round((Date.now()-ms)/1000),a=Math.abs(s),t=a<60?a+' s':a<3600?Math.floor(a/60)+' min':a<86400?Math.floor(a/3600)+' h':Math.floor(a/86400)+' d';return s<0?'in '+t:t+' ago'}
function times(root){root.querySelectorAll('time[data-ms]').forEach(t=>{const ms=+t.dataset.ms;t.textContent=fmt(ms);t.title=ago(ms)});root.querySelectorAll('.ago[data-ms]').forEach(t=>{t.textContent=ago(+t.dataset.ms)})}
if(tzb){tzb.textContent=zone==='utc'?'UTC':'local';tzb.onclick=()=>{zone=zone==='utc'?'local':'utc';localStorage.setItem('valor-tz',zone);tzb.textContent=zone==='utc'?'UTC':'local';times(document)}}
times(document);
function show(){if(!chip)return;chip.className=state==='live'?'':'off';
 chip.textContent=state==='live'?'live · '+Math.max(0,Math.round((Date.now()-last)/1000))+' s ago':state==='ended'?'session ended: run `valor dashboard`':state==='restarted'?'Valor restarted · reloading':state==='static'?'':'reconnecting…'}
setInterval(()=>{show();times(document)},1000);
const url=b.dataset.live;if(!url){state='static';show();return}
function seen(){last=Date.now();state='live';retry=1000;show();b.dataset.updated=last}
function connect(){es=new EventSource(url);
 es.addEventListener('hello',e=>{if(b.dataset.boot&&e.data!==b.dataset.boot){state='restarted';show();es.close();location.reload();return}seen()});
 es.addEventListener('ping',seen);
 es.addEventListener('fragment',e=>{const i=e.data.indexOf('\n'),el=document.getElementById(e.data.slice(0,i));if(el){el.innerHTML=e.data.slice(i+1);times(el)}seen()});
 es.addEventListener('lines',e=>{const el=document.getElementById('lines');if(!el){return}if(document.getElementById('pause')?.checked){seen();return}
  const t=document.createElement('template');t.innerHTML=e.data;times(t.content);const newest=el.dataset.order==='newest';
  if(newest){el.prepend(...[...t.content.childNodes].reverse())}else{el.append(t.content);if(document.getElementById('follow')?.checked){el.scrollTop=el.scrollHeight}}
  while(el.childElementCount>2000){(newest?el.lastElementChild:el.firstElementChild).remove()}seen()});
 es.onerror=()=>{if(es.readyState===2){es.close();state='reconnecting';show();
  fetch('/ui/session',{cache:'no-store'}).then(r=>{if(r.status===401){state='ended';show()}else{setTimeout(connect,retry);retry=Math.min(retry*2,15000)}}).catch(()=>{setTimeout(connect,retry);retry=Math.min(retry*2,15000)})}
  else{state='reconnecting';show()}}}
connect();
// A page left for another keeps its stream open in the back/forward cache, and a browser gives
// one host six connections: close it on leaving, open it again on coming back.
addEventListener('pagehide',()=>{if(es){es.close();es=null}});
addEventListener('pageshow',e=>{if(e.persisted&&!es){connect()}})})();
