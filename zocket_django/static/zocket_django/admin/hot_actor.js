// The admin page of one hot actor: polls its live.json every second and
// updates the fields, the state, the clients and the recent steps in place.
// Text only (textContent): the state holds whatever users sent.
'use strict';
{
    const PERIOD_MS = 1000;

    function rows(tbody, data, columns, empty) {
        const fresh = document.createDocumentFragment();
        if (data.length === 0) {
            const tr = document.createElement('tr');
            const td = document.createElement('td');
            td.colSpan = columns;
            td.textContent = empty;
            tr.appendChild(td);
            fresh.appendChild(tr);
        }
        for (const row of data) {
            const tr = document.createElement('tr');
            for (const cell of row) {
                const td = document.createElement('td');
                td.textContent = cell;
                tr.appendChild(td);
            }
            fresh.appendChild(tr);
        }
        tbody.replaceChildren(fresh);
    }

    function show(main, data) {
        for (const [key, , value] of data.fields) {
            const el = main.querySelector(`[data-field="${key}"]`);
            if (el && el.textContent !== value) {
                el.textContent = value;
            }
        }
        const state = document.getElementById('zocket-state');
        if (state.textContent !== data.state) {
            state.textContent = data.state;
        }
        rows(document.getElementById('zocket-clients'), data.clients, 4, 'No client.');
        rows(document.getElementById('zocket-recent'), data.recent, 5, 'No step yet.');
    }

    function start(main) {
        const url = main.dataset.liveUrl;
        const gone = document.getElementById('zocket-gone');
        const live = document.getElementById('zocket-live');
        let timer = null;

        async function poll() {
            try {
                const response = await fetch(url, {credentials: 'same-origin', cache: 'no-store'});
                if (!response.ok) {
                    throw new Error(`HTTP ${response.status}`);
                }
                const data = await response.json();
                gone.hidden = data.hot;
                if (data.hot) {
                    show(main, data);
                    live.textContent = `Version ${data.version}, live: updated at ${new Date().toLocaleTimeString()}.`;
                } else {
                    live.textContent = data.problem || 'Not hot any more: the last state seen.';
                }
            } catch (error) {
                live.textContent = `Not updating: ${error.message}.`;
            }
            timer = setTimeout(poll, PERIOD_MS);
        }

        document.addEventListener('visibilitychange', () => {
            clearTimeout(timer);
            if (!document.hidden) {
                poll();
            }
        });
        timer = setTimeout(poll, PERIOD_MS);
    }

    // The state, and with it #zocket-live, is on the page only when the instance was hot.
    document.addEventListener('DOMContentLoaded', () => {
        const main = document.querySelector('[data-live-url]');
        if (main && document.getElementById('zocket-state')) {
            start(main);
        }
    });
}
