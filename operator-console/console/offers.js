// Offers: conversations the router offers this operator, as cards with a countdown, accepted or
// declined here; and "take next". Owns the offers shown and the repeat tone while one waits.

import { t, setText } from '/console/i18n.js';
import { tone } from '/console/sound.js';
import { $, byIds, el, convLabel, fmtDuration, channelName, langName, errorText, toast } from '/console/util.js';
import { command, isWelcomed } from '/console/console/socket.js';
import {
  getConv, selectConv, selectOnArrival, selectNextArrival, awaitingArrival, updateTitle,
} from '/console/console/conversations.js';

const OFFER_REPEAT_TONE_MS = 10000;

const E = {
  ...byIds('offers', 'offers-empty', 'take-next'),
};

const offers = new Map();   // conversation id -> { data, receivedAt, card, busy }
let lastOfferTone = 0;

export function offerCount() { return offers.size; }
export function hasOffer(id) { return offers.has(id); }

export function addOffer(o, withTone) {
  if (!o || !o.conversation) return;
  const existing = offers.get(o.conversation);
  if (existing) existing.card.remove();
  const entry = { data: o, receivedAt: Date.now(), card: null, busy: false };
  entry.card = renderOfferCard(entry);
  offers.set(o.conversation, entry);
  E.offers.prepend(entry.card);
  E.offersEmpty.hidden = true;
  if (withTone && !existing) { tone('offer'); lastOfferTone = Date.now(); }
  updateTitle();
}

/** A welcome lists the offers open now: they replace the ones shown. */
export function replaceOffers(list) {
  for (const id of [...offers.keys()]) removeOffer(id);
  for (const o of list) addOffer(o, true);
}

export function dropAllOffers() {
  for (const id of [...offers.keys()]) removeOffer(id);
}

function renderOfferCard(entry) {
  const o = entry.data;
  const isTransfer = !!(o.transfer && typeof o.transfer === 'object');
  const card = el('article', {
    class: `offer-card${isTransfer ? ' offer-transfer' : ''}`,
    data: { testid: 'offer', conversation: o.conversation },
    'aria-label': isTransfer ? t('offer.transferTitle') : t('offer.title'),
  });
  card.append(el('h3', { class: 'offer-title', i18n: [isTransfer ? 'offer.transferTitle' : 'offer.title'] }));
  card.append(el('p', { class: 'offer-who', text: convLabel(o.conversation) }));
  card.append(el('p', { class: 'offer-meta' },
    el('span', { class: 'chip', text: channelName(o.channel) }),
    el('span', { class: 'chip', text: langName(o.language) })));
  card.append(el('p', { class: 'offer-waited', data: { role: 'waited' } }));
  if (isTransfer) {
    card.append(el('p', { class: 'offer-from', i18n: ['offer.from', { name: o.transfer.from || '?' }] }));
    if (o.transfer.note) {
      card.append(el('div', { class: 'offer-note' },
        el('strong', { i18n: ['offer.note'] }),
        el('p', { text: o.transfer.note })));
    }
  }
  const countdown = el('p', { class: 'offer-countdown', data: { role: 'countdown' }, 'aria-live': 'off' });
  card.append(countdown);
  const accept = el('button', { type: 'button', class: 'btn btn-primary btn-big', data: { testid: 'offer-accept' }, i18n: ['offer.accept'] });
  const decline = el('button', { type: 'button', class: 'btn', data: { testid: 'offer-decline' }, i18n: ['offer.decline'] });
  accept.addEventListener('click', () => acceptOffer(o.conversation));
  decline.addEventListener('click', () => declineOffer(o.conversation));
  card.append(el('div', { class: 'offer-actions' }, accept, decline));
  entry.card = card;
  updateOfferTimes(entry);
  return card;
}

function updateOfferTimes(entry) {
  const o = entry.data;
  const elapsed = Date.now() - entry.receivedAt;
  const waited = entry.card.querySelector('[data-role="waited"]');
  if (waited) setText(waited, 'offer.waited', { time: fmtDuration((o.waited_ms || 0) + elapsed) });
  const cd = entry.card.querySelector('[data-role="countdown"]');
  if (!cd) return;
  if (Number.isFinite(o.expires_in_ms)) {
    const left = o.expires_in_ms - elapsed;
    if (left > 0) {
      setText(cd, 'offer.expires', { s: Math.ceil(left / 1000) });
      cd.classList.toggle('urgent', left < 10000);
    } else {
      setText(cd, 'offer.expired');
      entry.card.classList.add('expired');
      for (const b of entry.card.querySelectorAll('button')) b.disabled = true;
      // The server withdraws it; if that message is lost, drop it ourselves.
      if (left < -5000) removeOffer(o.conversation);
    }
  }
}

/** Redraws the cards' times (each second, and in a new language). */
export function renderOfferTimes() {
  for (const entry of [...offers.values()]) updateOfferTimes(entry);
}

function acceptOffer(id) {
  const entry = offers.get(id);
  if (!entry || entry.busy) return;
  entry.busy = true;
  for (const b of entry.card.querySelectorAll('button')) b.disabled = true;
  selectOnArrival(id);
  command('accept', { conversation: id }, {
    onAck: () => {
      removeOffer(id);
      const conv = getConv(id);
      if (conv) selectConv(id);
    },
    onError: (e) => {
      selectOnArrival(null);
      toast(errorText(e.code, 'accept'), 'error');
      if (e.code === 'not_found' || e.code === 'out_of_order') { removeOffer(id); return; }
      const still = offers.get(id);
      if (still) { still.busy = false; for (const b of still.card.querySelectorAll('button')) b.disabled = false; updateOfferTimes(still); }
    },
  });
}

function declineOffer(id) {
  const entry = offers.get(id);
  if (!entry || entry.busy) return;
  entry.busy = true;
  command('decline', { conversation: id }, {
    onAck: () => removeOffer(id),
    onError: (e) => {
      if (e.code !== 'not_found' && e.code !== 'out_of_order') toast(errorText(e.code), 'error');
      removeOffer(id);
    },
  });
  removeOffer(id);
}

export function onOfferWithdrawn(m) {
  const had = offers.has(m.conversation);
  removeOffer(m.conversation);
  if (had && m.reason && m.reason !== 'declined' && !awaitingArrival(m.conversation)) {
    const key = `offer.withdrawn.${m.reason}`;
    if (m.reason === 'timeout' || m.reason === 'abandoned' || m.reason === 'taken') toast(t(key), 'info');
  }
}

export function removeOffer(id) {
  const entry = offers.get(id);
  if (!entry) return;
  entry.card.remove();
  offers.delete(id);
  E.offersEmpty.hidden = offers.size > 0;
  updateTitle();
}

function takeNext() {
  selectNextArrival(true);
  E.takeNext.disabled = true;
  command('take_next', {}, {
    onAck: () => { E.takeNext.disabled = !isWelcomed(); },
    onError: (e) => {
      selectNextArrival(false);
      E.takeNext.disabled = !isWelcomed();
      toast(errorText(e.code, 'take_next'), e.code === 'not_found' ? 'info' : 'error');
    },
  });
  setTimeout(() => { E.takeNext.disabled = !isWelcomed(); }, 1500);
}

/** Repeat the offer tone while an offer waits: nobody waits unseen. */
export function repeatOfferTone() {
  if (offers.size > 0 && Date.now() - lastOfferTone > OFFER_REPEAT_TONE_MS) {
    tone('offer');
    lastOfferTone = Date.now();
  }
}

E.takeNext.addEventListener('click', takeNext);
